"""Availability probes of ``shm``, ``cxl`` and ``ub``, and where each one's region comes from.

Imported by the registry to answer "can this backend run here?" without importing the engine: only the standard
library, the region providers, the layout arithmetic and the config (no torch, no numpy). Each probe fails soft
with its reason.
"""

from __future__ import annotations

import os

from sagellm_comm.errors import BackendNotSupportedError
from sagellm_comm.rendezvous import launcher_layout
from sagellm_comm_cxl_ub import futex, native, ordering
from sagellm_comm_cxl_ub.config import MemoryConfig
from sagellm_comm_cxl_ub.layout import Layout
from sagellm_comm_cxl_ub.regions import DeviceRegionProvider, DirectoryRegionProvider, RegionProvider

__all__ = [
    "cxl_available",
    "cxl_provider",
    "engine_path",
    "one_host_job",
    "ordering_supported",
    "shm_available",
    "shm_provider",
    "ub_available",
    "ub_provider",
]

UB_SYSFS = ("/sys/class/ubcore", "/sys/bus/ub/devices")


def ordering_supported() -> tuple[bool, str]:
    """The engine's flag protocol stores data before a counter and loads it after: ordered by x86-64's TSO or by
    the native library's atomics and fences (:mod:`~sagellm_comm_cxl_ub.ordering`)."""
    return ordering.supported()


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _memory_note(cfg: MemoryConfig) -> str:
    two = Layout(2, cfg.slot_for(2), cfg.chunk_bytes).size
    four = Layout(4, cfg.slot_for(4), cfg.chunk_bytes).size
    return (
        f"region per group: {_mib(two)} at 2 ranks, {_mib(four)} at 4 on this host (slots "
        f"{_mib(cfg.slot_for(2))} / {_mib(cfg.slot_for(4))}, mailboxes {_mib(cfg.chunk_bytes)})"
    )


def _engine_ok() -> tuple[bool, str]:
    if not futex.FUTEX_AVAILABLE:
        return False, futex.FUTEX_REASON
    return ordering_supported()


def shm_provider(cfg: MemoryConfig) -> RegionProvider:
    return DirectoryRegionProvider(cfg.shm_dir, kind="shm", host_local=True)


def cxl_provider(cfg: MemoryConfig) -> RegionProvider:
    if not cfg.cxl_path:
        raise BackendNotSupportedError(
            "cxl: no CXL memory configured; set SAGELLM_COMM_CXL_PATH (or cxl_path=) to a directory on CXL-backed "
            "memory, a DAX device (/dev/daxX.Y) or a file on CXL memory"
        )
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


def ub_provider(cfg: MemoryConfig) -> RegionProvider:
    dev = _ub_device()
    if dev is None:
        raise BackendNotSupportedError(
            "ub: no UB device on this host (neither /sys/class/ubcore nor /sys/bus/ub lists one: the ubcore driver "
            "is not loaded or there is no Unified Bus hardware)"
        )
    if not cfg.ub_segment:
        raise BackendNotSupportedError(
            f"ub: UB device {dev} found but no segment configured; set SAGELLM_COMM_UB_SEGMENT (or ub_segment=) "
            "to the device node through which the exported UB segment is mapped"
        )
    return DeviceRegionProvider(cfg.ub_segment, cfg.cxl_offset, kind="ub", host_local=False)


def engine_path(cfg: MemoryConfig) -> tuple[str | None, str]:
    """Which engine path groups will run here ("native" or "python"; None: the one asked for cannot run) and why.
    A group runs the native path only if every one of its ranks can (decided at group setup)."""
    if cfg.engine == "python":
        return "python", "python engine (engine=python / SAGELLM_COMM_SHM_ENGINE=python)"
    if native.lib is not None:
        return "native", f"{native.NATIVE_REASON}; all_reduce is called through {native.ALL_REDUCE_ENTRY}"
    if cfg.engine == "native":
        return None, f"engine=native was asked for, but {native.NATIVE_REASON}"
    return "python", f"python engine: {native.NATIVE_REASON}"


def _check(provider_fn, cfg: MemoryConfig) -> tuple[bool, str]:  # type: ignore[no-untyped-def]
    ok, why = _engine_ok()
    if not ok:
        return False, why
    path, engine_why = engine_path(cfg)
    if path is None:
        return False, engine_why
    try:
        provider = provider_fn(cfg)
    except BackendNotSupportedError as exc:
        return False, exc.message
    ok, why = provider.available()
    return ok, (f"{why}; {engine_why}; {_memory_note(cfg)}" if ok else why)


def one_host_job() -> tuple[bool, str]:
    """``auto_when`` of shm: not when the launcher says the ranks span several hosts (shm still serves groups of
    one host's ranks, e.g. inside the hierarchical composite)."""
    layout = launcher_layout()
    if layout is not None and layout[0] != layout[1]:
        return False, (
            f"ranks span several hosts (WORLD_SIZE={layout[0]}, LOCAL_WORLD_SIZE={layout[1]}); shm joins "
            "ranks of one host only"
        )
    return True, "ok"


def shm_available() -> tuple[bool, str]:
    return _check(shm_provider, MemoryConfig.from_options())


def cxl_available() -> tuple[bool, str]:
    return _check(cxl_provider, MemoryConfig.from_options())


def ub_available() -> tuple[bool, str]:
    return _check(ub_provider, MemoryConfig.from_options())
