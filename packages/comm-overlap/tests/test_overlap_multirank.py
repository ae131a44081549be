"""Multi-rank behaviour on real collectives (local ranks through the core's launcher): communication progresses
while the caller computes, the tensor-parallel layers equal their non-overlapped versions, a failing stage is
reported by name and chunk and leaves no thread behind."""

from __future__ import annotations

import pytest
import streams_tp_tasks as tasks

from sagellm_comm.launch import launch

pytestmark = pytest.mark.multirank


def test_communication_completes_while_the_caller_computes() -> None:
    """Rank 0 never touches the stream between submitting and the end of its compute; the all_reduce (which needs
    rank 1) finished inside that window, as its completion timestamp and event.query() show."""
    r0, r1 = launch(tasks.progress_during_compute, 2, 64 * 1024, 1.0, timeout=120.0)
    assert r0["ok"] and r1["ok"], "wrong all_reduce result"
    assert r0["done_by_end"], (
        "the all_reduce submitted on the communication stream had not completed after 1 s of "
        "compute: it does not progress while the caller computes"
    )
    assert r0["start"] < r0["done_at"] < r0["end"], (
        f"completion at {r0['done_at']:.4f} is outside the compute window [{r0['start']:.4f}, {r0['end']:.4f}]"
    )
    assert r0["matmuls"] > 0


@pytest.mark.parametrize("chunks", [3, 8])
def test_row_parallel_linear_equals_the_non_overlapped_layer(chunks: int) -> None:
    results = launch(tasks.tp_row, 2, chunks, timeout=120.0)
    for rank, r in enumerate(results):
        assert r["bitwise"], f"rank {rank}: overlapped result differs from the same chunks without overlap"
        assert r["plain_close"] and r["full_close"], f"rank {rank}: result differs from the plain/full layer"
        assert r["shape"] == (37, 48)
    assert results[0]["digest"] == results[1]["digest"], "ranks disagree on the all_reduced output"


def test_column_parallel_linear_equals_the_non_overlapped_layer() -> None:
    for rank, r in enumerate(launch(tasks.tp_column, 2, 4, timeout=120.0)):
        assert r["bitwise"], f"rank {rank}: overlapped result differs from the same chunks without overlap"
        assert r["plain_close"] and r["full_close"], f"rank {rank}: result differs from the plain/full layer"
        assert r["shape"] == (38, 32)


def test_failing_stage_is_named_and_leaves_no_thread() -> None:
    for rank, r in enumerate(launch(tasks.pipeline_stage_failure, 2, 2, timeout=120.0)):
        assert r.get("stage") == "all_reduce" and r.get("chunk") == 2 and r.get("chunks") == 6, (rank, r)
        assert "chunk 2 of 6" in r["message"] and "bad chunk 2" in r["message"]
        assert r["cause"] == "ValueError"
        assert r["code"] == "distributed_runtime_error"
        assert not r["stream_alive"] and not r["threads_left"], f"rank {rank}: threads left {r['threads_left']}"
