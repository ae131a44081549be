"""Work handles returned by ``async_op=True`` calls (the torch.distributed ``Work`` shape).

Stream semantics (docs/streams.md):

- ``wait(timeout)``: the op's results are usable by whatever the caller does next. On CPU that means the call
  blocks until the op finished. On an accelerator it means the caller's *current stream* waits for the op (work
  enqueued on it afterwards sees the results) and the CPU is not blocked, as with NCCL's ``Work.wait()``.
- ``synchronize(timeout)``: block the CPU until the results are in memory (``wait`` plus, on an accelerator, until
  the current stream has reached this point). Use it before reading results on the host.
- ``is_completed()`` never blocks; ``result(timeout)`` waits and returns the op's output (the tensor, or the list
  for list-form ops).

Every blocking call is bounded: past ``timeout`` seconds ``CommTimeoutError`` is raised (retryable: the op may still
finish; call ``wait`` again or destroy the group).
"""

from __future__ import annotations

import math
import numbers
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from sagellm_comm.errors import (
    CollectiveFailedError,
    CommError,
    CommTimeoutError,
    InvalidArgumentError,
    P2PFailedError,
)
from sagellm_comm.rendezvous import MAX_TIMEOUT_S

__all__ = ["CompletedWork", "FutureWork", "Work", "device_synchronize", "engine_error"]


def _wait_limit(op: str, timeout: Any) -> float | None:
    """A wait's ``timeout`` in seconds: None (or inf, or beyond ``MAX_TIMEOUT_S``) waits without a limit, a
    negative one polls once (as 0); anything but a real number is ``INVALID_ARGUMENT``."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or math.isnan(timeout):
        raise InvalidArgumentError(f"{op}: wait timeout must be a number of seconds or None, got {timeout!r}")
    seconds = float(timeout)
    if seconds >= MAX_TIMEOUT_S:
        return None
    return max(0.0, seconds)


def device_synchronize(device: Any, timeout: float | None = None) -> bool:
    """Block the CPU until ``device``'s current stream reached this point; False if ``timeout`` passed first.
    A no-op for CPU (and for ``None``). Device-generic: CUDA/ROCm, NPU (torch_npu), XPU through
    ``torch.get_device_module``."""
    if device is None or getattr(device, "type", "cpu") == "cpu":
        return True
    import torch

    module = torch.get_device_module(device.type)
    event = module.current_stream(device).record_event()
    if timeout is None:
        event.synchronize()
        return True
    deadline = time.monotonic() + timeout
    pause = 20e-6
    while not event.query():
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 1e-3)
    return True


_failures = [0]  # ops that failed in this process (Work.wait, and CommBackend calls): destroy() collects after one


def failures() -> int:
    """How many ops failed in this process so far."""
    return _failures[0]


def note_failure() -> None:
    _failures[0] += 1


def engine_error(op: str, exc: BaseException, engine: str = "") -> CommError:
    """An engine's exception from ``op`` (raised by the call or by waiting on it) as a protocol-coded error that
    says what to do; ``engine`` names the backend in the message."""
    text = f"{type(exc).__name__}: {exc}".strip()
    who = f"{engine} {op}" if engine else op
    if "timeout" in text.lower() or "timed out" in text.lower():
        return CommTimeoutError(
            f"{who} timed out ({text.splitlines()[0]}); a peer rank is stuck, gone or never called the same op. The "
            "group's state is unknown: destroy the group and form a new one.",
            retryable=False,
        )
    if op in ("send", "recv", "isend", "irecv"):
        return P2PFailedError(
            f"{who} failed: {text}. Check that the peer posted the matching op; if a peer rank "
            "exited, destroy the group and form a new one."
        )
    return CollectiveFailedError(
        f"{who} failed: {text}. Check that every rank called the same op with matching "
        "tensors; if a peer rank exited, destroy the group and form a new one."
    )


class Work(ABC):
    """A pending operation. Subclasses implement ``_wait`` and ``is_completed``."""

    def __init__(self, op: str, result: Any = None, on_complete: Callable[[], None] | None = None) -> None:
        self.op = op
        self.device: Any = None  # the torch.device of the op's tensors (set by the core)
        self._result = result
        self._on_complete = on_complete
        self._finished = False
        self._error: BaseException | None = None
        self._trace: list[Any] | None = None  # the flight recorder's entry of this op (sagellm_comm.trace)
        self._recorder: Any = None

    def trace(self, entry: list[Any], recorder: Any) -> None:
        """Report completion, failure or timeout of this op to the backend's flight recorder."""
        self._trace, self._recorder = entry, recorder

    @abstractmethod
    def is_completed(self) -> bool:
        """True once the operation finished (successfully or not); never blocks."""

    @abstractmethod
    def _wait(self, timeout: float | None) -> bool:
        """Block until done or ``timeout`` seconds pass; return False on timeout, raise on failure."""

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for completion; raise ``CommTimeoutError`` if ``timeout`` seconds pass first."""
        timeout = _wait_limit(self.op, timeout)
        if self._finished:
            if self._error is not None:
                raise self._error
            return True
        start = time.monotonic()
        try:
            done = self._wait(timeout)
        except CommError as exc:
            self._finished, self._error = True, exc
            self._traced("failed", exc)
            note_failure()
            raise
        except Exception as exc:  # the engine's own error (torch's RuntimeError): a protocol-coded one instead
            error = engine_error(self.op, exc)
            self._finished, self._error = True, error
            self._traced("failed", error)
            note_failure()
            raise error from exc
        if not done:
            timed_out = CommTimeoutError(
                f"{self.op} did not complete within {timeout:.3f}s (waited {time.monotonic() - start:.3f}s); "
                "a peer rank may be stuck or absent. Call wait() again to keep waiting, or destroy the group.",
                retryable=True,
            )
            self._traced("timeout", timed_out)
            raise timed_out
        self._finished = True
        if self._on_complete is not None:
            on_complete, self._on_complete = self._on_complete, None
            try:
                on_complete()
            except CommError as exc:  # a check run on completion (debug mode) failed the op
                self._error = exc
                self._traced("failed", exc)
                raise
            except Exception as exc:  # the copy-back into the caller's tensor (an engine's own error)
                error = engine_error(self.op, exc)
                self._error = error
                self._traced("failed", error)
                raise error from exc
        self._traced("done")
        return True

    def after_completion(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when a ``wait`` sees the op complete (after what was registered before); a ``CommError`` it
        raises fails the op."""
        before = self._on_complete

        def both() -> None:
            if before is not None:
                before()
            fn()

        self._on_complete = both

    def _traced(self, state: str, error: BaseException | None = None) -> None:
        if self._trace is None:
            return
        self._recorder.finish(self._trace, state, f"{type(error).__name__}: {error}" if error is not None else "")
        if state == "timeout" and isinstance(error, CommTimeoutError):
            try:
                error.trace_path = str(self._recorder.dump(reason=f"{self.op} wait timed out"))
            except OSError:
                pass

    def synchronize(self, timeout: float | None = None) -> bool:
        """Block the CPU until the op's results are in memory (on CPU the same as ``wait``)."""
        timeout = _wait_limit(self.op, timeout)
        start = time.monotonic()
        self.wait(timeout)
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
        if not device_synchronize(self.device, left):
            raise CommTimeoutError(
                f"{self.op}: the device stream did not reach the op's end within {timeout:.3f}s; the device is busy "
                "or a peer has not joined. Call synchronize() again to keep waiting, or destroy the group.",
                retryable=True,
            )
        return True

    def result(self, timeout: float | None = None) -> Any:
        """``wait(timeout)``, then the op's output: the tensor, or the list for list-form ops."""
        self.wait(timeout)
        return self._result

    def __repr__(self) -> str:
        return f"<{type(self).__name__} op={self.op} completed={self.is_completed()}>"


class CompletedWork(Work):
    """A handle for an operation that already finished when it was returned (e.g. world size 1)."""

    def is_completed(self) -> bool:
        """Always True: the op finished before the handle was returned."""
        return True

    def _wait(self, timeout: float | None) -> bool:
        return True


class FutureWork(Work):
    """An op running on a backend's own progress thread (a ``concurrent.futures.Future``): it progresses while the
    caller does other work; ``wait`` blocks until it finished and re-raises its error."""

    def __init__(self, op: str, future: Future[Any], on_complete: Callable[[], None] | None = None) -> None:
        super().__init__(op, on_complete=on_complete)
        self._future = future

    def is_completed(self) -> bool:
        """True once the future the op runs in is done (successfully or not); never blocks."""
        return self._future.done()

    def _wait(self, timeout: float | None) -> bool:
        try:
            self._future.result(timeout)
        except FutureTimeout:
            return False
        return True
