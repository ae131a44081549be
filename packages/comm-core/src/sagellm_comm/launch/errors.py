"""Errors of the local launcher: a rank failed, or ranks missed the deadline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sagellm_comm.errors import CommError, CommTimeoutError


class RankFailedError(CommError):
    """A rank raised (or died). ``rank`` is the first failing rank; ``remote_traceback`` its traceback."""

    def __init__(self, message: str, *, rank: int = -1, remote_traceback: str = "", **kw: Any) -> None:
        self.rank = rank
        self.remote_traceback = remote_traceback
        super().__init__(message, **kw)

    def __reduce__(self) -> tuple[Callable[..., RankFailedError], tuple[Any, ...]]:
        return (_rebuild_failed, (self.message, self.rank, self.remote_traceback))


def _rebuild_failed(message: str, rank: int, tb: str) -> RankFailedError:
    return RankFailedError(message, rank=rank, remote_traceback=tb)


class RankDeadlineError(CommTimeoutError):
    """Ranks did not finish in time. ``stuck_ranks`` lists them; ``stacks`` maps rank -> where it was."""

    def __init__(
        self, message: str, *, stuck_ranks: tuple[int, ...] = (), stacks: dict[int, str] | None = None, **kw: Any
    ) -> None:
        self.stuck_ranks = stuck_ranks
        self.stacks = stacks or {}
        super().__init__(message, retryable=False, **kw)

    def __reduce__(self) -> tuple[Callable[..., RankDeadlineError], tuple[Any, ...]]:
        return (_rebuild_deadline, (self.message, self.stuck_ranks, self.stacks))


def _rebuild_deadline(message: str, stuck: tuple[int, ...], stacks: dict[int, str]) -> RankDeadlineError:
    return RankDeadlineError(message, stuck_ranks=stuck, stacks=stacks)
