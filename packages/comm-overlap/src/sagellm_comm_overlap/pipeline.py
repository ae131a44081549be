"""``MultiStreamPipeline``: chunks through compute and communication stages, chunk k's communication overlapping
chunk k+1's compute.

Stages are plain functions ``fn(x) -> y`` marked ``"compute"`` (run by the caller: on the CPU inline, on an
accelerator enqueued on the current stream) or ``"comm"`` (submitted to the pipeline's :class:`CommStream`). Each
chunk passes through every stage in order; the scheduler on the caller's thread keeps at most ``max_in_flight``
chunks started and not finished and, at each step, does the first of:

1. the oldest chunk's next stage that can go without waiting: a comm stage (the stream orders it), or a compute stage
   whose input is ready (its communication finished, ``event.query()``);
2. start a new chunk (its first stage), if fewer than ``max_in_flight`` are in flight;
3. wait for the oldest chunk's pending communication (CPU: block; accelerator: the current stream waits).

So with compute -> comm -> compute, chunk k+1's first compute runs while chunk k's communication is in flight.
``max_in_flight=1`` is the sequential schedule (each chunk finishes before the next starts); the stage functions
see the same chunks in both, so the results are the same (bitwise when the stages are deterministic).

A failure in any stage surfaces at the caller as :class:`PipelineError` naming the stage and chunk (the original is
its ``__cause__``); the communication not yet started is cancelled and the stream drained first, so no thread
keeps running on the caller's buffers after ``run`` returns or raises. ``cancel()`` (from another thread) stops a
running pipeline the same way, with :class:`PipelineCancelled`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sagellm_comm.errors import CommError, InvalidArgumentError
from sagellm_comm_overlap.streams import CommStream, StreamEvent, StreamTaskError, comm_stream

__all__ = ["COMM", "COMPUTE", "MultiStreamPipeline", "PipelineCancelled", "PipelineError", "Stage"]

COMPUTE = "compute"
COMM = "comm"
DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Stage:
    """One step every chunk goes through: ``fn(x) -> y`` on ``on`` ("compute" or "comm")."""

    name: str
    fn: Callable[[Any], Any]
    on: str = COMPUTE

    def __post_init__(self) -> None:
        if self.on not in (COMPUTE, COMM):
            raise InvalidArgumentError(f"stage {self.name!r}: on must be {COMPUTE!r} or {COMM!r}, got {self.on!r}")
        if not callable(self.fn):
            raise InvalidArgumentError(f"stage {self.name!r}: fn must be callable, got {self.fn!r}")


class PipelineError(CommError):
    """Stage ``stage`` failed on chunk ``chunk`` (0-based) of ``chunks``; ``__cause__`` is the original error."""

    def __init__(
        self,
        message: str,
        *,
        stage: str = "",
        chunk: int = -1,
        chunks: int = 0,
        code: Any = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.stage, self.chunk, self.chunks = stage, chunk, chunks


class PipelineCancelled(PipelineError):
    """``cancel()`` stopped the pipeline."""


def _stage_error(stage: str, index: int, n: int, cause: BaseException) -> PipelineError:
    code = cause.code if isinstance(cause, CommError) else None
    retryable = cause.retryable if isinstance(cause, CommError) else None
    return PipelineError(
        f"pipeline stage {stage!r} failed on chunk {index} of {n}: {type(cause).__name__}: {cause}",
        stage=stage,
        chunk=index,
        chunks=n,
        code=code,
        retryable=retryable,
    )


def _run_stage(fn: Callable[[Any], Any], value: Any, timeout_s: float | None) -> Any:
    """On the stream: the input may be the previous comm stage's event (same stream, so already finished)."""
    if isinstance(value, StreamEvent):
        value = value.result(timeout_s)
    return fn(value)


class _Chunk:
    __slots__ = ("index", "next", "value")

    def __init__(self, index: int, value: Any) -> None:
        self.index, self.next, self.value = index, 0, value

    def pending(self) -> StreamEvent | None:
        return self.value if isinstance(self.value, StreamEvent) else None


class MultiStreamPipeline:
    """Run ``stages`` over chunks with compute and communication overlapped (see the module doc)."""

    def __init__(
        self,
        stages: Sequence[Stage],
        *,
        device: Any = "cpu",
        stream: CommStream | None = None,
        max_in_flight: int = 2,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        stages = list(stages)
        if not stages or not all(isinstance(s, Stage) for s in stages):
            raise InvalidArgumentError("a pipeline needs a non-empty list of Stage objects")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise InvalidArgumentError(f"max_in_flight must be an int >= 1, got {max_in_flight!r}")
        self.stages = stages
        self.device = torch.device(device) if stream is None else stream.device
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self._own_stream = stream is None and any(s.on == COMM for s in stages)
        self._stream = comm_stream(self.device) if self._own_stream else stream
        self._cancel = threading.Event()
        self.order: list[tuple[int, str]] = []  # (chunk, stage) in the order they were issued, for inspection

    @property
    def stream(self) -> CommStream | None:
        return self._stream

    def cancel(self) -> None:
        """Stop a running ``run`` (from another thread): it raises PipelineCancelled once the stream is drained."""
        self._cancel.set()

    # ------------------------------------------------------------------------------------------------------
    def run(self, chunks: Iterable[Any]) -> list[Any]:
        """Every chunk through every stage; the last stage's outputs in chunk order (on an accelerator, ordered
        on the current stream)."""
        items = list(chunks)
        n = len(items)
        self._cancel.clear()
        self.order = []
        done: list[Any] = [None] * n
        active: list[_Chunk] = []
        started = 0
        try:
            while started < n or active:
                if self._cancel.is_set():
                    raise PipelineCancelled(
                        f"pipeline cancelled with {n - started} of {n} chunks not started", chunks=n
                    )
                if self._step_ready(active, n):
                    pass
                elif started < n and len(active) < self.max_in_flight:
                    chunk = _Chunk(started, items[started])
                    started += 1
                    active.append(chunk)
                    self._issue(chunk, n)
                else:
                    self._resolve(active[0], n)
                while active and active[0].next == len(self.stages) and active[0].pending() is None:
                    finished = active.pop(0)
                    done[finished.index] = finished.value
            return done
        except BaseException:
            self._drain()
            raise

    def _step_ready(self, active: list[_Chunk], n: int) -> bool:
        """Issue the oldest chunk's next stage that needs no wait; False if there is none."""
        for chunk in active:
            pending = chunk.pending()
            if chunk.next == len(self.stages):
                if pending is not None and pending.query():
                    self._resolve(chunk, n)
                    return True
                continue
            if self.stages[chunk.next].on == COMM or pending is None or pending.query():
                self._issue(chunk, n)
                return True
        return False

    def _resolve(self, chunk: _Chunk, n: int) -> None:
        """Make the chunk's pending communication usable by what follows (CPU: wait; device: stream wait)."""
        event = chunk.pending()
        if event is None:  # already usable
            return
        try:
            chunk.value = event.result(self.timeout_s)
        except StreamTaskError as exc:
            root = exc
            while isinstance(root.__cause__, StreamTaskError):  # skipped after an earlier failure: that one
                root = root.__cause__
            stage, _, index = root.task.rpartition("#")
            cause = root.__cause__ if root.__cause__ is not None else root
            raise _stage_error(stage, int(index) if index.isdigit() else chunk.index, n, cause) from cause

    def _issue(self, chunk: _Chunk, n: int) -> None:
        stage = self.stages[chunk.next]
        self.order.append((chunk.index, stage.name))
        if stage.on == COMM:
            chunk.value = self._stream.submit(
                _run_stage, stage.fn, chunk.value, self.timeout_s, name=f"{stage.name}#{chunk.index}"
            )
            chunk.next += 1
            return
        if chunk.pending() is not None:
            self._resolve(chunk, n)
        try:
            chunk.value = stage.fn(chunk.value)
        except Exception as exc:
            raise _stage_error(stage.name, chunk.index, n, exc) from exc
        chunk.next += 1

    def _drain(self) -> None:
        """After a failure or cancel: drop queued communication and wait for the running one (bounded)."""
        if self._stream is None:
            return
        self._stream.cancel()
        try:
            self._stream.record_event("drain").synchronize(self.timeout_s)
        except CommError:
            pass

    def close(self) -> None:
        """Release the stream the pipeline created (a stream passed in is the caller's)."""
        if self._own_stream and self._stream is not None:
            self._stream.close()

    def __enter__(self) -> MultiStreamPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
