"""Real compute of a requested duration, for overlap measurements: back-to-back square matmuls, calibrated.

``MatmulLoad(device)`` times its matmul on this rank (median of a few blocks, after a warm-up) and
``reps_for(ms)`` says how many back-to-back matmuls take about ``ms`` milliseconds. ``run(reps)`` enqueues them on
the caller's current stream (an accelerator) or runs them (the CPU). The duration that counts is always measured
again where it is used: calibration only picks the repetition count.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from sagellm_comm.errors import InvalidArgumentError
from sagellm_comm.work import device_synchronize

__all__ = ["MatmulLoad", "matmul_size_for"]

CPU_N = 128  # ~0.1-0.3 ms per matmul on one CPU core: fine-grained enough for durations of a few ms
ACCEL_N = 2048  # large enough that an accelerator's launch overhead is a small part of each matmul
MAX_REPS = 10_000_000


def matmul_size_for(device: torch.device) -> int:
    return CPU_N if device.type == "cpu" else ACCEL_N


class MatmulLoad:
    """``n`` x ``n`` float32 matmuls on ``device`` (``n`` by device type unless given)."""

    def __init__(self, device: Any = "cpu", n: int | None = None, *, blocks: int = 5, per_block: int = 8) -> None:
        self.device = torch.device(device)
        self.n = n or matmul_size_for(self.device)
        gen = torch.Generator().manual_seed(0)
        self.a = (torch.rand(self.n, self.n, generator=gen) - 0.5).to(self.device)
        self.b = (torch.rand(self.n, self.n, generator=gen) - 0.5).to(self.device)
        self.out = torch.empty(self.n, self.n, device=self.device)
        self.seconds_per_matmul = self._calibrate(blocks, per_block)

    def _timed(self, reps: int) -> float:
        device_synchronize(self.device)
        t0 = time.perf_counter()
        self.run(reps)
        device_synchronize(self.device)
        return time.perf_counter() - t0

    def _calibrate(self, blocks: int, per_block: int) -> float:
        self._timed(per_block)  # warm-up: thread pools, kernels, caches
        return statistics.median(self._timed(per_block) / per_block for _ in range(blocks))

    def reps_for(self, ms: float) -> int:
        """How many matmuls take about ``ms`` milliseconds (at least one)."""
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not ms > 0:
            raise InvalidArgumentError(f"compute duration must be a positive number of milliseconds, got {ms!r}")
        return max(1, min(MAX_REPS, round(ms / 1e3 / self.seconds_per_matmul)))

    def run(self, reps: int) -> None:
        """``reps`` matmuls, back to back (on an accelerator: enqueued on the current stream)."""
        mm, a, b, out = torch.mm, self.a, self.b, self.out
        for _ in range(reps):
            mm(a, b, out=out)
