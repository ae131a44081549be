"""Timing loop shared by every benchmark: several engines on the same ranks, interleaved block by block.

Each block is a barrier of that engine and one lead-in call (neither timed), then ``calls`` back-to-back calls of
it timed with ``perf_counter`` (and a device synchronize at the end for accelerators). Ranks leave a barrier up to
~100 us apart (a rank that slept in it must be woken); the lead-in call absorbs that skew, so a timed call measures
the op, not the barrier's exit (without it a 17 us shared-memory all_reduce read as ~185 us here). Engines
alternate within and across blocks (A B, B A, A B, ...) so they see the same machine noise. ``calls=1`` gives
per-iteration samples (nccl-tests' per-op time); larger ``calls`` amortise the clock and barrier for tiny
messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from sagellm_comm.errors import BackendNotSupportedError

__all__ = ["barrier_of", "interleaved", "synchronizer"]


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Blocking collectives on accelerators return once queued: wait for the device before stopping the clock."""
    if device.type == "cpu":
        return lambda: None
    module = getattr(torch, device.type, None)
    sync = getattr(module, "synchronize", None)
    return sync if callable(sync) else (lambda: None)


def barrier_of(comm: Any) -> Callable[[], None]:
    """The backend's barrier, or a one-element all_reduce(sum) of zeros for backends that do not declare one."""
    if "barrier" in comm.capabilities.ops:
        return comm.barrier
    dtype = next(
        (d for d in (torch.float32, torch.int32, torch.float64, torch.int64) if d in comm.capabilities.dtypes), None
    )
    if dtype is None or "all_reduce" not in comm.capabilities.ops:
        raise BackendNotSupportedError(
            f"backend {comm.name!r} declares neither barrier nor a float32/int32 "
            "all_reduce; the benchmark needs one to line the ranks up"
        )
    token = torch.zeros(1, dtype=dtype, device=comm.device)
    return lambda: comm.all_reduce(token, op="sum")


def interleaved(
    engines: Mapping[str, Callable[[], Any]],
    *,
    blocks: int,
    calls: int = 1,
    warmup: int = 0,
    barriers: Mapping[str, Callable[[], Any]],
    sync: Callable[[], Any] = lambda: None,
) -> dict[str, list[float]]:
    """Seconds per call of each engine, one value per block. Each engine's block starts with that engine's own
    barrier, so its threads and connections are as warm as the other engine's (a barrier on one engine only
    would hand that engine a head start)."""
    names = list(engines)
    for _ in range(warmup):
        for name in names:
            engines[name]()
    sync()
    out: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    for b in range(blocks):
        for name in names if b % 2 == 0 else names[::-1]:
            fn = engines[name]
            barriers[name]()
            fn()  # lead-in: ranks leave the barrier apart, and this call lines them up again
            sync()
            t0 = clock()
            for _ in range(calls):
                fn()
            sync()
            out[name].append((clock() - t0) / calls)
    return out
