"""The compiled engine (``libsgshm``, built from ``csrc/`` by the wheel's build hook) and why it is or is not used.

Import-light (ctypes and the standard library only): the availability probe asks it which path is active. The
library has no Python ABI of its own -- ctypes calls it, releasing the GIL for the call -- so one build serves every
Python of the platform. The one call a small all_reduce makes goes through ``_sgshm``, a stable-ABI extension
over the same sources, where it was built (ctypes spends ~1 us converting its seven arguments); without it, through
ctypes too. ``SAGELLM_COMM_SHM_ENGINE`` (or the backend option ``engine=``) chooses: ``auto`` (the
native path where the library loads, else the Python one), ``native`` (fail when it does not load) or ``python``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

from sagellm_comm_cxl_ub.layout import Layout

__all__ = [
    "ABI_VERSION",
    "ALL_REDUCE_ENTRY",
    "LIBRARY",
    "NATIVE_AVAILABLE",
    "NATIVE_REASON",
    "SG_ABORTED",
    "SG_EXITED",
    "SG_INTERRUPTED",
    "SG_MISMATCH",
    "SG_OK",
    "SG_TIMEOUT",
    "SG_UNSUPPORTED",
    "Group",
    "calls",
    "lib",
    "make_group",
]

ABI_VERSION = 2  # csrc/sgshm.h SG_ABI_VERSION
LIBRARY = Path(__file__).with_name("_native") / "libsgshm.so"
SG_OK, SG_TIMEOUT, SG_EXITED, SG_ABORTED, SG_MISMATCH, SG_UNSUPPORTED, SG_INTERRUPTED = range(7)
REBUILD_HINT = "uv sync --reinstall-package isagellm-comm-cxl-ub (needs a C compiler: cc, gcc or clang)"


class Group(ctypes.Structure):
    """``sg_group`` of csrc/sgshm.h, field for field."""

    _fields_ = [
        ("base", ctypes.c_void_p),
        ("pids", ctypes.c_void_p),
        ("slot", ctypes.c_int64),
        ("parity_off", ctypes.c_int64 * 2),
        ("flags_off", ctypes.c_int64),
        ("step", ctypes.c_int64),
        ("chunk", ctypes.c_int64),
        ("split_min", ctypes.c_int64),
        ("spin_s", ctypes.c_double),
        ("yield_s", ctypes.c_double),
        ("timeout_s", ctypes.c_double),
        ("n", ctypes.c_int32),
        ("rank", ctypes.c_int32),
        ("host_local", ctypes.c_int32),
        ("abort", ctypes.c_int32),
        ("err_step", ctypes.c_int64),
        ("err_peer", ctypes.c_int32),
        ("tag_len", ctypes.c_int32),
        ("interrupted", ctypes.c_void_p),
    ]


def _load() -> tuple[ctypes.CDLL | None, str]:
    if not LIBRARY.exists():
        return None, (
            f"the native engine was not built into this install ({LIBRARY.name} missing: no C compiler at "
            f"build time, or SAGELLM_COMM_BUILD_NATIVE=0); rebuild with {REBUILD_HINT}"
        )
    try:
        so = ctypes.CDLL(str(LIBRARY))
    except OSError as exc:
        return None, f"cannot load {LIBRARY}: {exc}; rebuild with {REBUILD_HINT}"
    so.sg_abi_version.restype = ctypes.c_int
    if so.sg_abi_version() != ABI_VERSION:
        return None, (
            f"{LIBRARY.name} is a stale build (ABI {so.sg_abi_version()}, this package needs "
            f"{ABI_VERSION}); rebuild with {REBUILD_HINT}"
        )
    i64, i32, vp, dbl = ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p, ctypes.c_double
    g = vp  # every call takes the group's address
    for name, args, res in (
        ("sg_signal", (g, i64), None),
        ("sg_wait", (g, i64, dbl, i32), ctypes.c_int),
        ("sg_sync", (g, i64, ctypes.c_char_p, dbl), ctypes.c_int),
        ("sg_fence_release", (), None),
        ("sg_fence_acquire", (), None),
        ("sg_reduce_supported", (ctypes.c_int, ctypes.c_int), ctypes.c_int),
        ("sg_dtype_size", (ctypes.c_int,), ctypes.c_int),
        ("sg_reduce", (ctypes.c_int, ctypes.c_int, vp, ctypes.POINTER(vp), ctypes.c_int, i64), ctypes.c_int),
        ("sg_all_reduce", (vp, vp, i64, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int), ctypes.c_int),
    ):
        fn = getattr(so, name)
        fn.argtypes = args
        fn.restype = res
    return so, f"native engine ({LIBRARY.name}: compiled hot loop, acquire/release atomics)"


def _entries(so: ctypes.CDLL | None) -> tuple[dict[str, Callable[..., int]], int | None, str]:
    """The blocking calls -- ``all_reduce(group, data, numel, dtype, op, tag, algo)``, ``sync(group, step, tag,
    timeout_s)``, ``wait(group, step, timeout_s, only)``, groups by address, each returning a status -- from the
    ``_sgshm`` extension where it was built (faster to call, and its waits run Python's signal handlers: Ctrl-C
    stops a stuck collective), else from the library through ctypes; the signal check's address (or None); how."""
    if so is None:
        return {}, None, "no native library"
    plain = {"all_reduce": so.sg_all_reduce, "sync": so.sg_sync, "wait": so.sg_wait}
    try:
        from sagellm_comm_cxl_ub._native import _sgshm  # type: ignore[attr-defined]
    except ImportError as exc:
        return (
            plain,
            None,
            (
                f"ctypes (the _sgshm extension was not built: {exc}; Ctrl-C reaches a rank stuck in "
                "a collective only at the group timeout)"
            ),
        )
    if _sgshm.ABI_VERSION != ABI_VERSION:
        return plain, None, f"ctypes (_sgshm is a stale build, ABI {_sgshm.ABI_VERSION}; rebuild with {REBUILD_HINT})"
    calls = {"all_reduce": _sgshm.all_reduce, "sync": _sgshm.sync, "wait": _sgshm.wait}
    return calls, _sgshm.signal_check(), "the _sgshm extension"


lib, NATIVE_REASON = _load()
calls, SIGNAL_CHECK, ALL_REDUCE_ENTRY = _entries(lib)
NATIVE_AVAILABLE = lib is not None


def make_group(
    addr: int,
    layout: Layout,
    rank: int,
    pids: list[int],
    host_local: bool,
    spin_s: float,
    yield_s: float,
    timeout_s: float,
    split_min: int,
) -> Group:
    """The ``sg_group`` of one group's region mapped at ``addr`` (its pid array kept alive with it); all_reduce
    moves a slot per step."""
    n = layout.world_size
    pid_array = (ctypes.c_int64 * n)(*pids)
    g = Group(
        base=addr,
        pids=ctypes.addressof(pid_array),
        slot=layout.slot_bytes,
        flags_off=layout.flags_off,
        step=0,
        chunk=layout.slot_bytes,
        split_min=split_min,
        spin_s=spin_s,
        yield_s=yield_s,
        timeout_s=timeout_s,
        n=n,
        rank=rank,
        host_local=int(host_local),
        interrupted=SIGNAL_CHECK,
    )
    g.parity_off[0], g.parity_off[1] = layout.parity_off(0), layout.parity_off(1)
    g._keep = pid_array  # type: ignore[attr-defined]
    return g
