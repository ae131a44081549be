"""Exceptions raised by sagellm-comm.

Every error carries a protocol ``ErrorCode`` (``sagellm_protocol.errors.ErrorCode``), a ``retryable`` flag and a message
that says what to do. ``CommError.to_protocol()`` turns one into the protocol's ``Error`` model so services can
put it on the wire unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sagellm_protocol.errors import Error, ErrorCode

__all__ = [
    "BackendNotSupportedError",
    "CollectiveFailedError",
    "CommError",
    "CommTimeoutError",
    "ErrorCode",
    "GroupInvalidError",
    "GroupNotFoundError",
    "InvalidArgumentError",
    "NotInitializedError",
    "P2PFailedError",
    "RankMismatchError",
]


class CommError(RuntimeError):
    """Base of every sagellm-comm error: ``code`` (protocol ErrorCode), ``retryable`` and a human message."""

    default_code: ErrorCode = ErrorCode.DISTRIBUTED_RUNTIME_ERROR
    default_retryable: bool = False

    def __init__(self, message: str, *, code: ErrorCode | None = None, retryable: bool | None = None) -> None:
        self.code: ErrorCode = code if code is not None else self.default_code
        self.retryable: bool = self.default_retryable if retryable is None else retryable
        self.message = message
        super().__init__(f"[{self.code.value}] {message}")

    def to_protocol(self) -> Error:
        """This error as the protocol's ``Error`` model (code, message, retryable), ready to go on the wire."""
        return Error(code=self.code, message=self.message, retryable=self.retryable)

    # keep code and retryable across process boundaries (launcher results)
    def __reduce__(self) -> tuple[Callable[..., CommError], tuple[Any, ...]]:
        return (_rebuild, (type(self), self.message, self.code, self.retryable))


def _rebuild(cls: type[CommError], message: str, code: ErrorCode, retryable: bool) -> CommError:
    return cls(message, code=code, retryable=retryable)


class InvalidArgumentError(CommError, ValueError):
    """A bad argument (shape, dtype, op, rank, timeout, ...), rejected before any rank starts the op."""

    default_code = ErrorCode.INVALID_ARGUMENT


class BackendNotSupportedError(CommError):
    """Unknown backend, unavailable backend, or an op/dtype/device the backend does not declare."""

    default_code = ErrorCode.COMM_BACKEND_NOT_SUPPORTED


class RankMismatchError(CommError, ValueError):
    """The ranks disagree: a rank out of range or outside the group, ranks running different collectives, or a
    message that does not match the receive posted for it."""

    default_code = ErrorCode.COMM_RANK_MISMATCH


class GroupNotFoundError(CommError):
    """The group passed to a call is not a live group of the backend (destroyed, or from another backend)."""

    default_code = ErrorCode.COMM_GROUP_NOT_FOUND


class GroupInvalidError(CommError):
    """The group or the world cannot be set up or used as asked (e.g. initialized twice, MASTER_ADDR unusable)."""

    default_code = ErrorCode.COMM_GROUP_INVALID


class NotInitializedError(GroupInvalidError):
    """A collective was called before ``init_process_group`` (or after ``destroy``)."""


class CommTimeoutError(CommError, TimeoutError):
    """A blocking call (an op, a wait, the rendezvous) ran past its timeout; the message names who was missing."""

    default_code = ErrorCode.COMM_TIMEOUT
    # where the flight recorder dumped its trace of this timeout, when recording was on (docs/reliability.md)
    trace_path: str | None = None


class CollectiveFailedError(CommError):
    """A collective failed inside the backend's engine (a peer died, the transport broke)."""

    default_code = ErrorCode.COMM_COLLECTIVE_FAILED


class P2PFailedError(CommError):
    """A point-to-point send or receive failed inside the backend's engine."""

    default_code = ErrorCode.COMM_P2P_FAILED
