"""Exceptions raised by sagellm-comm.

Every error carries a protocol :class:`~sagellm_protocol.errors.ErrorCode`, a ``retryable`` flag and a message
that says what to do. ``CommError.to_protocol()`` turns one into the protocol's ``Error`` model so services can
put it on the wire unchanged.
"""

from __future__ import annotations

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
        return Error(code=self.code, message=self.message, retryable=self.retryable)

    def __reduce__(self):  # keep code and retryable across process boundaries (launcher results)
        return (_rebuild, (type(self), self.message, self.code, self.retryable))


def _rebuild(cls: type[CommError], message: str, code: ErrorCode, retryable: bool) -> CommError:
    return cls(message, code=code, retryable=retryable)


class InvalidArgumentError(CommError, ValueError):
    default_code = ErrorCode.INVALID_ARGUMENT


class BackendNotSupportedError(CommError):
    """Unknown backend, unavailable backend, or an op/dtype/device the backend does not declare."""

    default_code = ErrorCode.COMM_BACKEND_NOT_SUPPORTED


class RankMismatchError(CommError, ValueError):
    default_code = ErrorCode.COMM_RANK_MISMATCH


class GroupNotFoundError(CommError):
    default_code = ErrorCode.COMM_GROUP_NOT_FOUND


class GroupInvalidError(CommError):
    default_code = ErrorCode.COMM_GROUP_INVALID


class NotInitializedError(GroupInvalidError):
    """A collective was called before ``init_process_group`` (or after ``destroy``)."""


class CommTimeoutError(CommError, TimeoutError):
    default_code = ErrorCode.COMM_TIMEOUT


class CollectiveFailedError(CommError):
    default_code = ErrorCode.COMM_COLLECTIVE_FAILED


class P2PFailedError(CommError):
    default_code = ErrorCode.COMM_P2P_FAILED
