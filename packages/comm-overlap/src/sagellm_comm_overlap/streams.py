"""Communication streams and events, one interface over devices.

A :class:`CommStream` runs submitted work in order; each ``submit`` returns a :class:`StreamEvent` that marks the
end of that work, and the caller (or another stream) waits on exactly the events it needs:

- ``ThreadStream`` (CPU): a communication executor. One worker thread runs the submitted functions in order, so a
  blocking collective progresses while the caller computes (torch releases the GIL in both). Events complete when
  the function returned; ``event.done_at`` is the ``time.monotonic()`` of that moment.
- ``DeviceStream`` (CUDA/ROCm, NPU with torch_npu, XPU: anything ``torch.get_device_module`` knows with streams):
  a side stream. ``submit`` orders the stream after the caller's current stream, runs the function with the side
  stream current (a collective is enqueued there, as torch's NCCL/HCCL process groups do), and records an event.
  ``event.wait()`` makes the caller's current stream wait for it; the CPU is not blocked.

Failures are sticky, as on a CUDA stream: once a function fails, the work queued after it is not run and its
events fail too (a collective skipped on one rank must not run out of order on another). ``cancel()`` drops work
not yet started; ``close()`` cancels and joins the worker within a bound. Every blocking call takes a timeout
(``CommTimeoutError``, retryable: call again to keep waiting).

One group's collectives must be issued from one stream (as with an NCCL communicator): two streams issuing on
the same group can order them differently on different ranks.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch

from sagellm_comm.errors import CommError, CommTimeoutError, InvalidArgumentError

__all__ = [
    "CancelledError",
    "CommStream",
    "DeviceStream",
    "StreamEvent",
    "StreamTaskError",
    "ThreadStream",
    "comm_stream",
]

_ids = itertools.count(1)


class StreamTaskError(CommError):
    """A function submitted to a stream failed (or was skipped after an earlier failure); ``task`` names it and
    ``__cause__`` is the original error. Code and retryable flag come from the original when it is a CommError."""

    def __init__(self, message: str, *, task: str = "", code: Any = None, retryable: bool | None = None) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.task = task


class CancelledError(StreamTaskError):
    """Work that was cancelled before it started."""


def _deadline_wait(poll: Callable[[], bool], timeout: float | None, what: str) -> None:
    """Poll ``poll`` with a growing pause until it is true; CommTimeoutError after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    pause = 20e-6
    while not poll():
        if deadline is not None and time.monotonic() >= deadline:
            raise CommTimeoutError(
                f"{what} did not complete within {timeout:.3f}s; the communication is stuck or a "
                "peer rank has not joined. Wait again, or cancel and destroy the group.",
                retryable=True,
            )
        time.sleep(pause)
        pause = min(pause * 2, 1e-3)


class StreamEvent(ABC):
    """The end of one piece of stream work."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def query(self) -> bool:
        """True once the work finished (successfully or not); never blocks."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> None:
        """Order what the caller does next after this work: on the CPU block until it finished, on a device make
        the current stream wait. Raises the work's failure (``StreamTaskError``)."""

    @abstractmethod
    def synchronize(self, timeout: float | None = None) -> None:
        """Block the CPU until the work finished (on a device: until its results are in device memory)."""

    @abstractmethod
    def result(self, timeout: float | None = None) -> Any:
        """``wait``, then the submitted function's return value."""

    @property
    def done_at(self) -> float | None:
        """``time.monotonic()`` when the work finished, where the stream knows it (CPU); else None."""
        return None


class CommStream(ABC):
    """Ordered communication work on one device."""

    device: torch.device

    @abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any, name: str = "") -> StreamEvent:
        """Run ``fn(*args)`` after everything submitted before; returns the event marking its end."""

    @abstractmethod
    def wait_event(self, event: StreamEvent) -> None:
        """Work submitted after this call starts only once ``event`` completed."""

    def record_event(self, name: str = "mark") -> StreamEvent:
        """An event that completes when everything submitted so far did."""
        return self.submit(lambda: None, name=name)

    def synchronize(self, timeout: float | None = None) -> None:
        """Block until everything submitted so far finished (raises the first failure)."""
        self.record_event("synchronize").synchronize(timeout)

    @abstractmethod
    def cancel(self) -> int:
        """Drop the work not yet started (its events fail with CancelledError); returns how many were dropped."""

    @abstractmethod
    def close(self, timeout: float | None = 30.0) -> None:
        """Cancel what has not started and release the stream (joining its worker within ``timeout``)."""

    def __enter__(self) -> CommStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------------------
# CPU: a communication executor
# ----------------------------------------------------------------------------------------------------------
class _ThreadEvent(StreamEvent):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self._done_at: float | None = None

    def _finish(self, value: Any = None, error: BaseException | None = None) -> None:
        self._value, self._error = value, error
        self._done_at = time.monotonic()
        self._done.set()

    def query(self) -> bool:
        return self._done.is_set()

    def synchronize(self, timeout: float | None = None) -> None:
        if not self._done.wait(timeout):
            raise CommTimeoutError(
                f"stream work {self.name!r} did not complete within {timeout:.3f}s; the "
                "communication is stuck or a peer rank has not joined. Wait again, or cancel "
                "and destroy the group.",
                retryable=True,
            )
        if self._error is not None:
            raise self._error

    wait = synchronize

    def result(self, timeout: float | None = None) -> Any:
        self.synchronize(timeout)
        return self._value

    @property
    def done_at(self) -> float | None:
        return self._done_at


def _task_error(name: str, exc: BaseException) -> StreamTaskError:
    code = exc.code if isinstance(exc, CommError) else None
    retryable = exc.retryable if isinstance(exc, CommError) else None
    error = StreamTaskError(
        f"stream work {name!r} failed: {type(exc).__name__}: {exc}", task=name, code=code, retryable=retryable
    )
    error.__cause__ = exc
    return error


class ThreadStream(CommStream):
    """CPU communication stream: one worker thread runs the submitted functions in order."""

    def __init__(self, name: str = "comm") -> None:
        self.device = torch.device("cpu")
        self.name = f"{name}-{next(_ids)}"
        self._queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], _ThreadEvent] | None] = (
            queue.SimpleQueue()
        )
        self._failed: StreamTaskError | None = None
        self._closed = False
        self._pending = 0
        self._cancel_upto = 0  # tasks with a sequence number below this are dropped
        self._seq = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name=f"sagellm-{self.name}", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any, name: str = "") -> StreamEvent:
        if not callable(fn):
            raise InvalidArgumentError(f"submit needs a callable, got {fn!r}")
        event = _ThreadEvent(name or getattr(fn, "__name__", "work"))
        with self._lock:
            if self._closed:
                raise InvalidArgumentError(f"stream {self.name} is closed; create a new one")
            self._seq += 1
            event._seq = self._seq  # type: ignore[attr-defined]
            self._pending += 1
        self._queue.put((fn, args, event))
        return event

    def wait_event(self, event: StreamEvent) -> None:
        if isinstance(event, _ThreadEvent) and event.query():
            return
        self.submit(lambda: event.synchronize(), name=f"wait {event.name}")

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args, event = item
            with self._lock:
                self._pending -= 1
                dropped = event._seq < self._cancel_upto  # type: ignore[attr-defined]
                failed = self._failed
            if dropped:
                event._finish(
                    error=CancelledError(f"stream work {event.name!r} was cancelled before it started", task=event.name)
                )
                continue
            if failed is not None:
                skipped = StreamTaskError(
                    f"stream work {event.name!r} did not run: an earlier task on stream "
                    f"{self.name} failed ({failed.task!r})",
                    task=event.name,
                    code=failed.code,
                    retryable=False,
                )
                skipped.__cause__ = failed
                event._finish(error=skipped)
                continue
            try:
                value = fn(*args)
            except BaseException as exc:  # every failure goes to the event; the thread lives on
                error = _task_error(event.name, exc)
                with self._lock:
                    self._failed = error
                event._finish(error=error)
            else:
                event._finish(value)

    def cancel(self) -> int:
        with self._lock:
            self._cancel_upto = self._seq + 1
            return self._pending

    def close(self, timeout: float | None = 30.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cancel_upto = self._seq + 1
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise CommTimeoutError(
                f"stream {self.name}: the running work did not finish within {timeout}s of close; "
                "it is blocked in communication (its own timeout ends it)",
                retryable=True,
            )

    @property
    def alive(self) -> bool:
        """Whether the worker thread still runs."""
        return self._thread.is_alive()


# ----------------------------------------------------------------------------------------------------------
# accelerators: a side stream
# ----------------------------------------------------------------------------------------------------------
class _DeviceEvent(StreamEvent):
    def __init__(
        self, name: str, stream: DeviceStream, event: Any, value: Any = None, error: BaseException | None = None
    ) -> None:
        super().__init__(name)
        self._stream, self._event, self._value, self._error = stream, event, value, error

    def query(self) -> bool:
        return self._error is not None or self._event.query()

    def wait(self, timeout: float | None = None) -> None:
        if self._error is not None:
            raise self._error
        current = self._stream.module.current_stream(self._stream.device)
        current.wait_event(self._event)
        for t in _tensors(self._value):
            t.record_stream(current)

    def synchronize(self, timeout: float | None = None) -> None:
        if self._error is not None:
            raise self._error
        _deadline_wait(self._event.query, timeout, f"stream work {self.name!r}")

    def result(self, timeout: float | None = None) -> Any:
        self.wait(timeout)
        return self._value


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in ``value`` (nested lists and tuples included)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _tensors(v)]
    return []


class DeviceStream(CommStream):
    """A side stream of ``device`` (CUDA/ROCm, NPU, XPU) through ``torch.get_device_module``."""

    def __init__(self, device: Any) -> None:
        self.device = torch.device(device)
        self.module = torch.get_device_module(self.device.type)
        if self.device.index is None:
            self.device = torch.device(self.device.type, self.module.current_device())
        self.stream = self.module.Stream(device=self.device)
        self._failed: StreamTaskError | None = None
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any, name: str = "") -> StreamEvent:
        if not callable(fn):
            raise InvalidArgumentError(f"submit needs a callable, got {fn!r}")
        if self._closed:
            raise InvalidArgumentError("this device stream is closed; create a new one")
        label = name or getattr(fn, "__name__", "work")
        event = self.module.Event()
        if self._failed is not None:
            skipped = StreamTaskError(
                f"stream work {label!r} did not run: an earlier task on this stream failed ({self._failed.task!r})",
                task=label,
                code=self._failed.code,
                retryable=False,
            )
            return _DeviceEvent(label, self, event, error=skipped)
        self.stream.wait_stream(self.module.current_stream(self.device))
        for t in _tensors(args):
            t.record_stream(self.stream)
        try:
            with self.module.stream(self.stream):
                value = fn(*args)
        except Exception as exc:
            self._failed = _task_error(label, exc)
            return _DeviceEvent(label, self, event, error=self._failed)
        event.record(self.stream)
        return _DeviceEvent(label, self, event, value)

    def wait_event(self, event: StreamEvent) -> None:
        if isinstance(event, _DeviceEvent):
            if event._error is not None:
                raise event._error
            self.stream.wait_event(event._event)
        else:
            event.synchronize()

    def cancel(self) -> int:
        return 0  # enqueued device work cannot be recalled; nothing waits on the CPU

    def close(self, timeout: float | None = 30.0) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(CommError):
            _deadline_wait(self.stream.query, timeout, "the device stream's work")


def comm_stream(device: Any = "cpu", name: str = "comm") -> CommStream:
    """A communication stream for ``device``: a :class:`ThreadStream` on the CPU, a :class:`DeviceStream` on an
    accelerator whose torch module has streams."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return ThreadStream(name)
    try:
        module = torch.get_device_module(dev.type)
    except (RuntimeError, AttributeError) as exc:
        raise InvalidArgumentError(
            f"no torch device module for {dev.type!r} ({exc}); import its torch extension (e.g. torch_npu) first"
        ) from None
    if not hasattr(module, "Stream"):
        raise InvalidArgumentError(f"torch.{dev.type} has no streams; use the CPU ThreadStream")
    return DeviceStream(dev)
