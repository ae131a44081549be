"""Host identity: hostname and a stable node id (``SAGELLM_COMM_NODE_ID`` overrides it)."""

from __future__ import annotations

import hashlib
import os
import socket

from sagellm_comm_topology.sysroot import SysRoot

__all__ = ["NODE_ID_ENV", "hostname_of", "node_id_of"]

NODE_ID_ENV = "SAGELLM_COMM_NODE_ID"


def hostname_of(root: SysRoot) -> str:
    """The live hostname, or the recorded one (``/proc/sys/kernel/hostname``) of a recorded tree."""
    if root.is_live:
        return socket.gethostname()
    return root.read("/proc/sys/kernel/hostname") or "unknown-host"


def node_id_of(root: SysRoot, hostname: str) -> str:
    """Same rule as the core's ``Topology``: the override, else sha256(hostname:machine-id), 16 hex digits."""
    override = os.environ.get(NODE_ID_ENV)
    if override:
        return override
    seed = root.read("/etc/machine-id") or ""
    return hashlib.sha256(f"{hostname}:{seed}".encode()).hexdigest()[:16]
