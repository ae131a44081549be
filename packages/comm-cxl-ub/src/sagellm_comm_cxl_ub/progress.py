"""``OpQueue``: a group's collectives in call order, with a progress thread for ``async_op=True``.

A blocking op runs inline on the caller's thread when nothing is queued (no thread hop on the fast path); behind
pending async ops it is queued after them and waited for, so every rank runs the group's ops in the order it called
them, as a collective needs. An async op is handed to the group's progress thread and the call returns at once:
the op moves while the caller computes, and its ``Work`` completes without the caller driving it. Every wait inside
an op is bounded by the group timeout, so a queued op cannot hang the thread forever.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["OpQueue"]

CLOSE_WAIT_S = 5.0


class OpQueue:
    def __init__(self, name: str) -> None:
        self.name = name
        self._run_lock = threading.Lock()  # held while an op runs: one op of the group at a time
        self._count_lock = threading.Lock()
        self._pending = 0
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Queue ``fn`` on the progress thread (after every op queued before it); return its future."""
        with self._count_lock:
            self._pending += 1
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"sagellm-comm-{self.name}")
            pool = self._pool
        try:
            return pool.submit(self._run_queued, fn)
        except BaseException:
            with self._count_lock:
                self._pending -= 1
            raise

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` now: inline when the queue is idle, else after the queued ops (on the progress
        thread)."""
        if self._pending == 0:  # one read (atomic in CPython); the lock would not make check-then-run atomic
            with self._run_lock:
                return fn(*args)
        return self.submit(lambda: fn(*args)).result()

    def _run_queued(self, fn: Callable[[], Any]) -> Any:
        try:
            with self._run_lock:
                return fn()
        finally:
            with self._count_lock:
                self._pending -= 1

    def close(self) -> bool:
        """Stop the progress thread: queued ops that have not started are cancelled, a running one gets
        ``CLOSE_WAIT_S`` to finish (the caller aborts its waits first). False if the thread is still running."""
        with self._count_lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return True
        pool.shutdown(wait=False, cancel_futures=True)
        workers = list(getattr(pool, "_threads", ()))
        for worker in workers:
            worker.join(CLOSE_WAIT_S)
        return not any(w.is_alive() for w in workers)
