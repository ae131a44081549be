"""Availability of the mpshm backend, answered without importing the backend module."""

from __future__ import annotations

import os
import sys

__all__ = ["available"]


def available() -> tuple[bool, str]:
    """Linux with a writable /dev/shm (peers map each other's segments from there). Cheap: creates nothing."""
    if not sys.platform.startswith("linux"):
        return False, "mpshm is an example for Linux (peers map each other's segments from /dev/shm)"
    if not os.access("/dev/shm", os.W_OK):
        return False, "/dev/shm is missing or not writable (in a container: mount a tmpfs there, e.g. --shm-size)"
    return True, "POSIX shared memory; one host, the world group, blocking calls"
