"""Step counters: how ranks of a group tell each other "my data for step s is in place".

Each rank owns one 32-bit counter in the region and is its only writer; peers poll it. ``signal(s)`` stores ``s``
and wakes sleepers; ``wait_all(s)`` returns once every peer's counter reached ``s``. Waiting spins for a short
while (the peer is usually microseconds away) and then sleeps on the peer's futex word, so when ranks outnumber
cores a waiting rank gives its core to the rank it waits for. Every sleep is bounded, the deadline is checked
after each, and a peer whose process is gone is reported at once (same-host groups) instead of at the deadline.

Ordering: data is stored before the counter and read after it. On x86-64 (TSO) plain stores and loads keep that
order; elsewhere the fences of :mod:`~sagellm_comm_cxl_ub.ordering` do. With the native engine bound
(``bind_native``) signalling and waiting run in C, with acquire/release atomics, and a signal makes the futex
wake-up syscall only when a peer sleeps on the counter (a sleepers count beside it).
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from sagellm_comm.errors import CollectiveFailedError, CommTimeoutError
from sagellm_comm_cxl_ub import futex, native
from sagellm_comm_cxl_ub.native import SG_ABORTED, SG_EXITED, SG_OK, SG_TIMEOUT
from sagellm_comm_cxl_ub.ordering import acquire_fence, release_fence

__all__ = ["StepCounters", "reached"]

_MASK = 0xFFFFFFFF
_HALF = 0x80000000
SLEEP_SLICE_S = 0.002  # longest single futex sleep: bounds a missed cross-host wake-up
LIVENESS_EVERY_S = 0.05


def reached(value: int, target: int) -> bool:
    """Counter ``value`` is at or past ``target`` (both modulo 2**32, within half the range)."""
    return ((value - target) & _MASK) < _HALF


def _as_int32(v: int) -> int:
    v &= _MASK
    return v - (1 << 32) if v >= _HALF else v


class StepCounters:
    def __init__(
        self,
        mapping: object,
        base: int,
        offsets: Sequence[int],
        rank: int,
        ranks_global: Sequence[int],
        pids: Sequence[int],
        host_local: bool,
        spin_s: float,
        timeout_s: float,
        group_id: str,
        yield_s: float = 0.0,
    ) -> None:
        self.rank = rank
        self.n = len(offsets)
        self.global_ranks = list(ranks_global)
        self.pids = list(pids)
        self.host_local = host_local
        self.spin_s = spin_s
        self.yield_s = yield_s
        self.timeout_s = timeout_s
        self.group_id = group_id
        self._anchor = ctypes.c_char.from_buffer(mapping)  # type: ignore[arg-type]
        addr0 = ctypes.addressof(self._anchor) + base
        self.addrs = [addr0 + off for off in offsets]
        self.words = [
            np.ndarray((1,), dtype=np.int32, buffer=mapping, offset=base + off)  # type: ignore[call-overload]
            for off in offsets
        ]
        self.peers = [j for j in range(self.n) if j != rank]
        self.aborted = False
        self.native: Any = None  # the group's native ``Group`` (native.py) once bound
        self._ref: int | None = None  # the native group's address, once bound
        self._signal: Any = None
        self._wait: Any = None

    def bind_native(self, group: Any) -> None:
        """Signal and wait through the native library from now on (every rank of the group does the same)."""
        self.native, self._ref = group, ctypes.addressof(group)
        self._signal, self._wait = native.lib.sg_signal, native.calls["wait"]

    def abort(self) -> None:
        """Make a wait in progress (on a progress thread) give up within one sleep slice: the group is going away."""
        self.aborted = True
        if self.native is not None:
            self.native.abort = 1

    def release(self) -> None:
        self._ref = self.native = None
        self.words = []
        self._anchor = None  # type: ignore[assignment]

    def signal(self, step: int) -> None:
        if self._ref is not None:
            self._signal(self._ref, step)
            return
        release_fence()
        self.words[self.rank][0] = _as_int32(step)
        futex.wake(self.addrs[self.rank])

    def wait_all(self, step: int, timeout_s: float | None = None, only: Sequence[int] | None = None) -> None:
        if self._ref is not None:
            for j in (-1,) if only is None else only:
                if j != self.rank:
                    self.check(self._wait(self._ref, step, timeout_s or 0.0, j), step, timeout_s)
            return
        target = step & _MASK
        for j in self.peers if only is None else only:
            if j != self.rank and not reached(int(self.words[j][0]), target):
                self._wait_one(j, target, step, timeout_s)
        acquire_fence()

    def check(self, status: int, step: int, timeout_s: float | None = None) -> None:
        """Raise what a native wait's ``status`` means (the same errors as the Python waits)."""
        if status == SG_OK:
            return
        if status == SG_TIMEOUT:
            self._timeout(step, timeout_s or self.timeout_s)
        if status == SG_EXITED:
            raise self._exited_error(self.native.err_peer, step)
        if status == SG_ABORTED:
            raise self._aborted_error(step)
        raise CollectiveFailedError(
            f"group {self.group_id}: native engine status {status} at step {step}", retryable=False
        )

    def _wait_one(self, j: int, target: int, step: int, timeout_s: float | None) -> None:
        word = self.words[j]
        if self.spin_s > 0:
            end = time.perf_counter() + self.spin_s
            while time.perf_counter() < end:
                if reached(int(word[0]), target):
                    return
        if self.yield_s > 0:
            end = time.perf_counter() + self.yield_s
            while time.perf_counter() < end:
                if reached(int(word[0]), target):
                    return
                os.sched_yield()
        start = time.monotonic()
        limit = self.timeout_s if timeout_s is None else timeout_s
        next_check = start + LIVENESS_EVERY_S
        addr = self.addrs[j]
        while True:
            v = int(word[0])
            if reached(v, target):
                return
            futex.wait(addr, v, SLEEP_SLICE_S)
            if self.aborted:
                raise self._aborted_error(step)
            now = time.monotonic()
            if now >= next_check:
                next_check = now + LIVENESS_EVERY_S
                if reached(int(word[0]), target):
                    return
                # every peer that has not reached this step, not only the one waited for: that one may itself be
                # waiting for a rank that died
                for k in self.peers:
                    if k == j or not reached(int(self.words[k][0]), target):
                        self._check_alive(k, step)
                if now - start > limit:
                    self._timeout(step, limit)

    def exited(self, j: int) -> bool:
        """Whether group rank ``j``'s process is gone (only knowable for ranks of this host)."""
        if not self.host_local or self.pids[j] <= 0:
            return False
        try:
            os.kill(self.pids[j], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False

    def _check_alive(self, j: int, step: int) -> None:
        if self.exited(j):
            raise self._exited_error(j, step)

    def _exited_error(self, j: int, step: int) -> CollectiveFailedError:
        return CollectiveFailedError(
            f"group {self.group_id}: rank {self.global_ranks[j]} (pid {self.pids[j]}) exited while rank "
            f"{self.global_ranks[self.rank]} waited for it at step {step}; the group cannot continue: destroy() "
            "the backend and start the job again",
            retryable=False,
        )

    def _aborted_error(self, step: int) -> CollectiveFailedError:
        return CollectiveFailedError(
            f"group {self.group_id}: destroyed while rank {self.global_ranks[self.rank]} waited at step {step} "
            "for a peer; the op was abandoned",
            retryable=False,
        )

    def _timeout(self, step: int, limit: float) -> None:
        target = step & _MASK
        stuck = [self.global_ranks[j] for j in self.peers if not reached(int(self.words[j][0]), target)]
        raise CommTimeoutError(
            f"group {self.group_id}: rank {self.global_ranks[self.rank]} waited {limit:.1f}s at step {step} for "
            f"rank(s) {stuck}, which never reached it: they are stuck, slower than the timeout, or called a "
            "different op. Raise the timeout (SAGELLM_COMM_TIMEOUT_S) or find the stuck rank.",
            retryable=False,
        )
