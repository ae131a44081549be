"""The three backends: one engine, three places the region comes from.

- ``shm``: POSIX shared memory (``/dev/shm``) on one host; the default CPU backend inside a node once installed.
- ``cxl``: CXL-attached memory, given as a path: a directory on CXL-backed memory (a tmpfs or hugetlbfs mounted
  with ``mpol=bind:<CXL node>``, an fs-dax mount: one file per group, like ``shm``) or a DAX character device /
  a pre-sized file (groups get consecutive 2 MiB-aligned windows). Ranks on different hosts sharing one CXL pool
  form one group (wake-ups are host-local there, so waits fall back to short timed polls).
- ``ub``: a UB (Huawei Unified Bus) segment mapped through its driver's device node; available only where a UB
  device is registered with ubcore and the segment is configured.
"""

from __future__ import annotations

import os
from typing import ClassVar

from sagellm_comm.errors import BackendNotSupportedError
from sagellm_comm_cxl_ub import futex
from sagellm_comm_cxl_ub.backend import MemoryBackend
from sagellm_comm_cxl_ub.config import MemoryConfig
from sagellm_comm_cxl_ub.layout import Layout
from sagellm_comm_cxl_ub.regions import DeviceRegionProvider, DirectoryRegionProvider, RegionProvider
from sagellm_comm_cxl_ub.sync import ordering_supported

__all__ = ["CxlBackend", "ShmBackend", "UbBackend", "cxl_available", "shm_available", "ub_available"]

UB_SYSFS = ("/sys/class/ubcore", "/sys/bus/ub/devices")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _memory_note(cfg: MemoryConfig) -> str:
    two = Layout(2, cfg.slot_for(2), cfg.chunk_bytes).size
    four = Layout(4, cfg.slot_for(4), cfg.chunk_bytes).size
    return (f"region per group: {_mib(two)} at 2 ranks, {_mib(four)} at 4 on this host (slots "
            f"{_mib(cfg.slot_for(2))} / {_mib(cfg.slot_for(4))}, mailboxes {_mib(cfg.chunk_bytes)})")


def _engine_ok() -> tuple[bool, str]:
    if not futex.FUTEX_AVAILABLE:
        return False, futex.FUTEX_REASON
    return ordering_supported()


def _provider_for_cxl(cfg: MemoryConfig) -> RegionProvider:
    if not cfg.cxl_path:
        raise BackendNotSupportedError(
            "cxl: no CXL memory configured; set SAGELLM_COMM_CXL_PATH (or cxl_path=) to a directory on CXL-backed "
            "memory, a DAX device (/dev/daxX.Y) or a file on CXL memory")
    if os.path.isdir(cfg.cxl_path):
        return DirectoryRegionProvider(cfg.cxl_path, kind="cxl", host_local=True)
    return DeviceRegionProvider(cfg.cxl_path, cfg.cxl_offset, kind="cxl-device", host_local=False)


def _ub_device() -> str | None:
    for root in UB_SYSFS:
        try:
            entries = sorted(os.listdir(root))
        except OSError:
            continue
        if entries:
            return f"{root}/{entries[0]}"
    return None


def _check(provider_fn, cfg: MemoryConfig) -> tuple[bool, str]:  # type: ignore[no-untyped-def]
    ok, why = _engine_ok()
    if not ok:
        return False, why
    try:
        provider = provider_fn(cfg)
    except BackendNotSupportedError as exc:
        return False, exc.message
    ok, why = provider.available()
    return ok, (f"{why}; {_memory_note(cfg)}" if ok else why)


def _local_world() -> str | None:
    ws, local = os.environ.get("WORLD_SIZE"), os.environ.get("LOCAL_WORLD_SIZE")
    if ws and local and ws != local:
        return (f"ranks span several hosts (WORLD_SIZE={ws}, LOCAL_WORLD_SIZE={local}); shm joins ranks of one "
                "host only")
    return None


class ShmBackend(MemoryBackend):
    name: ClassVar[str] = "shm"

    def _provider(self, config: MemoryConfig) -> RegionProvider:
        return DirectoryRegionProvider(config.shm_dir, kind="shm", host_local=True)


class CxlBackend(MemoryBackend):
    name: ClassVar[str] = "cxl"

    def _provider(self, config: MemoryConfig) -> RegionProvider:
        return _provider_for_cxl(config)


class UbBackend(MemoryBackend):
    name: ClassVar[str] = "ub"

    def _provider(self, config: MemoryConfig) -> RegionProvider:
        return _provider_for_ub(config)


def _provider_for_ub(cfg: MemoryConfig) -> RegionProvider:
    dev = _ub_device()
    if dev is None:
        raise BackendNotSupportedError(
            "ub: no UB device on this host (neither /sys/class/ubcore nor /sys/bus/ub lists one: the ubcore driver "
            "is not loaded or there is no Unified Bus hardware)")
    if not cfg.ub_segment:
        raise BackendNotSupportedError(
            f"ub: UB device {dev} found but no segment configured; set SAGELLM_COMM_UB_SEGMENT (or ub_segment=) "
            "to the device node through which the exported UB segment is mapped")
    return DeviceRegionProvider(cfg.ub_segment, cfg.cxl_offset, kind="ub", host_local=False)


def shm_available() -> tuple[bool, str]:
    multi = _local_world()
    if multi:
        return False, multi
    cfg = MemoryConfig.from_options()
    return _check(lambda c: DirectoryRegionProvider(c.shm_dir, kind="shm"), cfg)


def cxl_available() -> tuple[bool, str]:
    return _check(_provider_for_cxl, MemoryConfig.from_options())


def ub_available() -> tuple[bool, str]:
    return _check(_provider_for_ub, MemoryConfig.from_options())
