"""The physical bound for shared-memory collectives on this host: how fast one core copies memory.

``torch`` copies a large buffer (bigger than the caches) with one thread; the bandwidth counts the bytes read
plus the bytes written (2 x size per copy), the way STREAM's copy counts them. Any intra-host collective moves
at least its bus bytes through memory, so its busbw over this bound says how close to the machine it gets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from sagellm_comm.benchmark.metrics import median

__all__ = ["CopyBound", "copy_bandwidth"]

COUNTED = "read + write (2 x bytes per copy), one thread"


@dataclass(frozen=True)
class CopyBound:
    """A measured copy bound: GB/s, the buffer size, the repeats and how bytes were counted (read + write)."""

    gbps: float
    nbytes: int
    repeats: int
    counted: str = COUNTED


def copy_bandwidth(nbytes: int = 256 << 20, repeats: int = 7) -> CopyBound:
    """Median single-thread copy bandwidth in GB/s (1e9 B/s) of a ``nbytes`` buffer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        src = torch.ones(nbytes, dtype=torch.uint8)
        dst = torch.empty_like(src)
        dst.copy_(src)  # touch every page before timing
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            dst.copy_(src)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return CopyBound(gbps=2 * nbytes / median(times) / 1e9, nbytes=nbytes, repeats=repeats)
