"""The three backends: one engine, three places the region comes from.

- ``shm``: POSIX shared memory (``/dev/shm``) on one host; the default CPU backend inside a node once installed.
- ``cxl``: CXL-attached memory, given as a path: a directory on CXL-backed memory (a tmpfs or hugetlbfs mounted
  with ``mpol=bind:<CXL node>``, an fs-dax mount: one file per group, like ``shm``) or a DAX character device /
  a pre-sized file (groups get consecutive 2 MiB-aligned windows). Ranks on different hosts sharing one CXL pool
  form one group (wake-ups are host-local there, so waits fall back to short timed polls).
- ``ub``: a UB (Huawei Unified Bus) segment mapped through its driver's device node; available only where a UB
  device is registered with ubcore and the segment is configured.

Whether each can run here is answered by :mod:`sagellm_comm_cxl_ub.probes`, which does not import this module.
"""

from __future__ import annotations

from typing import ClassVar

from sagellm_comm_cxl_ub.backend import MemoryBackend
from sagellm_comm_cxl_ub.config import MemoryConfig
from sagellm_comm_cxl_ub.probes import cxl_provider, shm_provider, ub_provider
from sagellm_comm_cxl_ub.regions import RegionProvider

__all__ = ["CxlBackend", "ShmBackend", "UbBackend"]


class ShmBackend(MemoryBackend):
    name: ClassVar[str] = "shm"

    def _provider(self, config: MemoryConfig) -> RegionProvider:
        return shm_provider(config)


class CxlBackend(MemoryBackend):
    name: ClassVar[str] = "cxl"

    def _provider(self, config: MemoryConfig) -> RegionProvider:
        return cxl_provider(config)


class UbBackend(MemoryBackend):
    name: ClassVar[str] = "ub"

    def _provider(self, config: MemoryConfig) -> RegionProvider:
        return ub_provider(config)
