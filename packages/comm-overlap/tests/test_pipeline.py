"""MultiStreamPipeline on the CPU stream with plain functions as stages: the schedule overlaps, results equal the
sequential schedule for any stage mix, failures name stage and chunk, cancellation leaves nothing running."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sagellm_comm.errors import InvalidArgumentError
from sagellm_comm_overlap import COMM, MultiStreamPipeline, PipelineCancelled, PipelineError, Stage


def _stages(kinds: list[str]) -> list[Stage]:
    def step(i: int):
        return lambda x: x * (i + 2) + i  # deterministic, order-sensitive across stages

    return [Stage(f"s{i}", step(i), on=k) for i, k in enumerate(kinds)]


@settings(max_examples=40, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["compute", "comm"]), min_size=1, max_size=5),
    n=st.integers(0, 9),
    depth=st.integers(1, 4),
)
def test_any_stage_mix_gives_the_sequential_results(kinds: list[str], n: int, depth: int) -> None:
    chunks = [torch.arange(4, dtype=torch.float64) + 10 * k for k in range(n)]
    with MultiStreamPipeline(_stages(kinds), max_in_flight=depth) as pipe:
        out = pipe.run(chunks)
        assert len(pipe.order) == n * len(kinds)
    with MultiStreamPipeline(_stages(kinds), max_in_flight=1) as seq:
        expected = seq.run(chunks)
    assert len(out) == n
    for got, want in zip(out, expected, strict=True):
        assert torch.equal(got, want)


def test_next_chunk_computes_while_the_previous_communicates() -> None:
    gate = threading.Event()

    def comm(x):
        gate.wait(10.0)  # the communication of chunk 0 cannot finish until chunk 1's compute ran
        return x

    def first(x):
        if int(x) == 1:
            gate.set()
        return x

    stages = [Stage("c1", first), Stage("comm", comm, on=COMM), Stage("c2", lambda x: x)]
    with MultiStreamPipeline(stages, max_in_flight=2) as pipe:
        assert pipe.run([0, 1, 2]) == [0, 1, 2]
        order = pipe.order
    assert order.index((1, "c1")) < order.index((0, "c2"))


def test_in_flight_bound_is_kept() -> None:
    live, peak = [0], [0]
    lock = threading.Lock()

    def start(x):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        return x

    def finish(x):
        with lock:
            live[0] -= 1
        return x

    stages = [
        Stage("start", start),
        Stage("comm", lambda x: (time.sleep(0.002), x)[1], on=COMM),
        Stage("finish", finish),
    ]
    with MultiStreamPipeline(stages, max_in_flight=3) as pipe:
        pipe.run(range(20))
    assert peak[0] <= 3


def test_compute_failure_names_stage_and_chunk() -> None:
    def boom(x):
        if x == 3:
            raise RuntimeError("compute broke")
        return x

    with MultiStreamPipeline([Stage("comm", lambda x: x, on=COMM), Stage("post", boom)]) as pipe:
        with pytest.raises(PipelineError, match=r"stage 'post' failed on chunk 3 of 5.*compute broke") as info:
            pipe.run(range(5))
        assert (info.value.stage, info.value.chunk, info.value.chunks) == ("post", 3, 5)
        assert isinstance(info.value.__cause__, RuntimeError)


def test_comm_failure_names_stage_and_chunk_and_skips_the_rest() -> None:
    ran: list[int] = []

    def comm(x):
        ran.append(x)
        if x == 1:
            raise OSError("link down")
        return x

    stages = [Stage("pre", lambda x: x), Stage("send", comm, on=COMM)]
    with (
        MultiStreamPipeline(stages, max_in_flight=4) as pipe,
        pytest.raises(PipelineError, match="stage 'send' failed on chunk 1 of 6") as info,
    ):
        pipe.run(range(6))
    assert isinstance(info.value.__cause__, OSError)
    assert ran == [0, 1], f"communication after the failure ran: {ran}"


def test_cancel_from_another_thread_stops_and_leaves_no_worker() -> None:
    started = threading.Event()

    def slow(x):
        started.set()
        time.sleep(0.05)
        return x

    pipe = MultiStreamPipeline([Stage("comm", slow, on=COMM), Stage("post", lambda x: x)], max_in_flight=2)
    threading.Timer(0.0, lambda: (started.wait(10.0), pipe.cancel())).start()
    with pytest.raises(PipelineCancelled, match="cancelled"):
        pipe.run(range(1000))
    stream = pipe.stream
    pipe.close()
    assert not stream.alive


def test_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError):
        MultiStreamPipeline([])
    with pytest.raises(InvalidArgumentError, match="max_in_flight"):
        MultiStreamPipeline([Stage("a", lambda x: x)], max_in_flight=0)
    with pytest.raises(InvalidArgumentError, match="on must be"):
        Stage("a", lambda x: x, on="gpu")
