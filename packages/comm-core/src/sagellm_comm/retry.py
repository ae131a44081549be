"""Bounded retry with exponential backoff, for steps that are safe to repeat.

Safe means the step has no effect until it succeeds: binding a listening socket, connecting to a rendezvous
store, (later) re-establishing an RDMA endpoint. A collective is never retried: it may have partly run on some
ranks, and running it again would reduce twice or pair with the peers' next call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["retry"]

T = TypeVar("T")


def retry(
    step: Callable[[], T],
    *,
    retry_on: Callable[[BaseException], bool],
    deadline_s: float,
    first_wait_s: float = 0.05,
    max_wait_s: float = 1.0,
) -> T:
    """``step()`` until it returns, re-raising at once any error ``retry_on`` rejects; a retryable error is retried
    after waiting ``first_wait_s``, doubling up to ``max_wait_s``, until ``deadline_s`` seconds have passed, then
    the last error is raised."""
    end = time.monotonic() + max(deadline_s, 0.0)
    wait = first_wait_s
    while True:
        try:
            return step()
        except BaseException as exc:
            left = end - time.monotonic()
            if not retry_on(exc) or left <= 0:
                raise
            time.sleep(min(wait, left))
            wait = min(wait * 2, max_wait_s)
