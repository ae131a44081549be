"""Work handles returned by ``async_op=True`` calls (the torch.distributed ``Work`` shape).

``wait(timeout)`` blocks at most ``timeout`` seconds and raises ``CommTimeoutError`` past it; ``is_completed()``
never blocks; ``result()`` waits and returns the op's output (the tensor, or the list for list-form ops).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from sagellm_comm.errors import CommError, CommTimeoutError

__all__ = ["CompletedWork", "Work"]


class Work(ABC):
    """A pending operation. Subclasses implement ``_wait`` and ``is_completed``."""

    def __init__(self, op: str, result: Any = None, on_complete: Callable[[], None] | None = None) -> None:
        self.op = op
        self._result = result
        self._on_complete = on_complete
        self._finished = False
        self._error: BaseException | None = None

    @abstractmethod
    def is_completed(self) -> bool:
        """True once the operation finished (successfully or not); never blocks."""

    @abstractmethod
    def _wait(self, timeout: float | None) -> bool:
        """Block until done or ``timeout`` seconds pass; return False on timeout, raise on failure."""

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for completion; raise ``CommTimeoutError`` if ``timeout`` seconds pass first."""
        if self._finished:
            if self._error is not None:
                raise self._error
            return True
        start = time.monotonic()
        try:
            done = self._wait(timeout)
        except CommError as exc:
            self._finished, self._error = True, exc
            raise
        if not done:
            raise CommTimeoutError(
                f"{self.op} did not complete within {timeout:.3f}s (waited {time.monotonic() - start:.3f}s); "
                "a peer rank may be stuck or absent. Call wait() again to keep waiting, or destroy the group.",
                retryable=True,
            )
        self._finished = True
        if self._on_complete is not None:
            self._on_complete()
            self._on_complete = None
        return True

    def result(self, timeout: float | None = None) -> Any:
        self.wait(timeout)
        return self._result

    def __repr__(self) -> str:
        return f"<{type(self).__name__} op={self.op} completed={self.is_completed()}>"


class CompletedWork(Work):
    """A handle for an operation that already finished when it was returned (e.g. world size 1)."""

    def is_completed(self) -> bool:
        return True

    def _wait(self, timeout: float | None) -> bool:
        return True
