"""Streams and events without a backend: order, events, sticky failures, cancellation, timeouts, shutdown."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from sagellm_comm.errors import CommTimeoutError, InvalidArgumentError
from sagellm_comm_overlap import CancelledError, DeviceStream, StreamTaskError, ThreadStream, comm_stream


def test_cpu_stream_is_a_thread_stream_and_runs_in_order() -> None:
    with comm_stream("cpu") as stream:
        assert isinstance(stream, ThreadStream)
        seen: list[int] = []
        events = [stream.submit(seen.append, i) for i in range(50)]
        events[-1].wait(10.0)
        assert seen == list(range(50))
        assert all(e.query() for e in events)
        stamps = [e.done_at for e in events]
        assert stamps == sorted(stamps)


def test_result_and_record_event() -> None:
    with ThreadStream() as stream:
        ev = stream.submit(lambda a, b: a + b, 2, 3, name="add")
        assert ev.result(10.0) == 5 and ev.name == "add"
        gate = threading.Event()
        blocker = stream.submit(gate.wait, 10.0)
        mark = stream.record_event()
        assert not mark.query()
        gate.set()
        mark.synchronize(10.0)
        assert blocker.query()


def test_failure_is_sticky_and_carries_the_cause() -> None:
    with ThreadStream() as stream:
        bad = stream.submit(lambda: 1 / 0, name="divide")
        after = stream.submit(lambda: "never", name="after")
        with pytest.raises(StreamTaskError, match="divide") as info:
            bad.wait(10.0)
        assert isinstance(info.value.__cause__, ZeroDivisionError)
        with pytest.raises(StreamTaskError, match="did not run: an earlier task") as later:
            after.wait(10.0)
        assert later.value.task == "after"


def test_wait_past_the_timeout_raises_a_retryable_timeout() -> None:
    gate = threading.Event()
    with ThreadStream() as stream:
        ev = stream.submit(gate.wait, 30.0)
        t0 = time.monotonic()
        with pytest.raises(CommTimeoutError) as info:
            ev.wait(0.2)
        assert info.value.retryable and time.monotonic() - t0 < 5.0
        gate.set()
        ev.wait(10.0)


def test_cancel_drops_work_not_yet_started_and_close_joins_the_worker() -> None:
    gate, entered = threading.Event(), threading.Event()
    stream = ThreadStream()
    running = stream.submit(lambda: (entered.set(), gate.wait(30.0)))
    assert entered.wait(10.0)
    queued = [stream.submit(lambda: None) for _ in range(3)]
    assert stream.cancel() >= 3
    gate.set()
    running.wait(10.0)
    for ev in queued:
        with pytest.raises(CancelledError):
            ev.wait(10.0)
    later = stream.submit(lambda: 7)  # work submitted after a cancel runs
    assert later.result(10.0) == 7
    stream.close(10.0)
    assert not stream.alive
    with pytest.raises(InvalidArgumentError, match="closed"):
        stream.submit(lambda: None)


def test_wait_event_orders_one_stream_after_another() -> None:
    gate = threading.Event()
    seen: list[str] = []
    with ThreadStream() as first, ThreadStream() as second:
        upstream = first.submit(lambda: (gate.wait(30.0), seen.append("first")))
        second.wait_event(upstream)
        done = second.submit(seen.append, "second")
        time.sleep(0.05)
        assert seen == []
        gate.set()
        done.wait(10.0)
        assert seen == ["first", "second"]


def test_bad_arguments() -> None:
    with ThreadStream() as stream, pytest.raises(InvalidArgumentError, match="callable"):
        stream.submit(42)
    with pytest.raises(InvalidArgumentError):
        comm_stream("meta")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this host: DeviceStream runs on a GPU")
def test_device_stream_orders_after_the_current_stream() -> None:
    stream = comm_stream("cuda")
    assert isinstance(stream, DeviceStream)
    x = torch.zeros(1 << 20, device="cuda")
    a = torch.rand(2048, 2048, device="cuda")
    for _ in range(20):
        a = a @ a / a.norm()
    x.add_(1.0)  # queued behind the matmuls on the current stream
    ev = stream.submit(lambda t: t * 2, x)
    y = ev.result(30.0)
    assert float(y.sum().item()) == 2.0 * x.numel()
    stream.close()
