"""The seed's overlap benchmark: ``run_overlap_benchmark`` as the seed calls it, the command as documented, the
field set, the same-run definitions (docs/overlap.md), bad input, and a backend initialized by the caller."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import overlap_bench_tasks
import pytest
from bench_helpers import run_py
from hypothesis import given
from hypothesis import strategies as st

from sagellm_comm.benchmark import SEED_OVERLAP_FIELDS, OverlapRecord, run_overlap_benchmark
from sagellm_comm.benchmark.overlap import overlap_metrics
from sagellm_comm.errors import InvalidArgumentError
from sagellm_comm.launch import launch

SEED = (
    "comm_bytes",
    "compute_duration_ms",
    "comm_submit_ms",
    "comm_wait_ms",
    "compute_ms",
    "total_ms",
    "overlap_ratio",
    "overlap_efficiency",
    "theoretical_sequential_ms",
    "theoretical_overlap_ms",
)


def _check_row(row: dict) -> None:
    assert set(SEED) <= set(row)
    assert math.isclose(row["theoretical_sequential_ms"], row["comm_alone_ms"] + row["compute_alone_ms"])
    assert math.isclose(row["theoretical_overlap_ms"], max(row["comm_alone_ms"], row["compute_alone_ms"]))
    for key in ("comm_submit_ms", "comm_wait_ms", "compute_ms", "total_ms", "comm_alone_ms", "compute_alone_ms"):
        assert row[key] >= 0, key
    for key in ("overlap_ratio", "overlap_efficiency"):
        assert row[key] is None or 0.0 <= row[key] <= 1.0
        assert (row[key] is None) == bool(row["note"].startswith("nothing measurable")), row


@pytest.mark.multirank
def test_seed_call_as_written(tmp_path: Path) -> None:
    out = tmp_path / ".benchmarks" / "overlap"
    results = run_overlap_benchmark(
        comm_bytes=[1024, 4096], compute_durations_ms=[10, 50], output_dir=str(out), warmup_iters=1, benchmark_iters=3
    )
    assert [(r.comm_bytes, r.compute_duration_ms) for r in results] == [(1024, 10), (1024, 50), (4096, 10), (4096, 50)]
    for r in results:
        assert isinstance(r, OverlapRecord)
        assert r["overlap_ratio"] == r.overlap_ratio and r.world_size == 2 and r.matmul_reps >= 1
        _check_row(r.to_row())
    (json_path,) = out.glob("overlap_all_reduce_ws2_*.json")
    (csv_path,) = out.glob("overlap_all_reduce_ws2_*.csv")
    doc = json.loads(json_path.read_text())
    assert doc["schema"] == "sagellm-comm/overlap-benchmark/1" and len(doc["results"]) == 4
    for row in doc["results"]:
        _check_row(row)
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(next(iter(csv.reader(csv_path.open())))[: len(SEED)]) == SEED_OVERLAP_FIELDS == SEED
    assert len(rows) == 4
    assert not list(out.glob(".*.tmp")), "temporary files left behind"


@pytest.mark.multirank
def test_command_as_documented(tmp_path: Path) -> None:
    proc = run_py(
        "-m",
        "sagellm_comm.benchmark.run_overlap_bench",
        "--comm-bytes",
        "4K",
        "64K",
        "--compute-ms",
        "5",
        "--warmup",
        "1",
        "--iters",
        "2",
        "--output-dir",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    for word in ("efficiency", "hidden", "sequential", "ideal", "64 KiB"):
        assert word in proc.stdout, (word, proc.stdout)
    assert len(list(tmp_path.glob("overlap_all_reduce_ws2_*.json"))) == 1
    assert len(list(tmp_path.glob("overlap_all_reduce_ws2_*.csv"))) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--comm-bytes", "1001"], "multiple of 4"),
        (["--compute-ms", "0"], "must be > 0"),
        (["--iters", "0"], "benchmark_iters"),
        (["--op", "broadcast"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_py(
        "-m", "sagellm_comm.benchmark.run_overlap_bench", *args, "--output-dir", str(tmp_path / "o"), timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert not list((tmp_path / "o").glob("*.json")) if (tmp_path / "o").exists() else True


@pytest.mark.parametrize(
    "kwargs",
    [
        {"comm_bytes": 4096},
        {"comm_bytes": []},
        {"compute_durations_ms": "10"},
        {"compute_durations_ms": [-1]},
        {"warmup_iters": -1},
        {"op": "scatter"},
        {"nproc": 0},
    ],
)
def test_bad_arguments_raise_before_any_rank_starts(kwargs: dict) -> None:
    with pytest.raises(InvalidArgumentError):
        run_overlap_benchmark(**{"output_dir": None, **kwargs})


@pytest.mark.multirank
def test_backend_initialized_by_the_caller(tmp_path: Path) -> None:
    r0, r1 = launch(overlap_bench_tasks.overlap_on_my_backend, 2, str(tmp_path), timeout=180.0)

    def measured(rows: list[dict]) -> list[dict]:  # each rank stamps its own clock
        return [{k: v for k, v in row.items() if k != "timestamp"} for row in rows]

    assert measured(r0["rows"]) == measured(r1["rows"]), "ranks report different records"
    assert r0["initialized_after"], "the benchmark destroyed a backend the caller owns"
    assert len(list(tmp_path.glob("overlap_all_reduce_ws2_*.json"))) == 1
    _check_row(r0["rows"][0])


def test_definitions() -> None:
    seq, ideal, eff, ratio, note = overlap_metrics(10.0, 20.0, 21.0, 0.5)
    assert (seq, ideal) == (30.0, 20.0)
    assert eff == pytest.approx(0.9) and ratio == pytest.approx(0.9) and note == ""
    # communication longer than compute: efficiency against the compute, ratio against the communication
    seq, ideal, eff, ratio, _ = overlap_metrics(40.0, 10.0, 45.0, 0.5)
    assert eff == pytest.approx(0.5) and ratio == pytest.approx(5 / 40)
    # worse than sequential clips to 0; better than ideal clips to 1
    assert overlap_metrics(10.0, 10.0, 25.0, 0.1)[2] == 0.0
    assert overlap_metrics(10.0, 10.0, 9.0, 0.1)[2] == 1.0
    # nothing to hide beyond the noise
    _, _, eff, ratio, note = overlap_metrics(0.2, 50.0, 50.1, 1.5)
    assert eff is None and ratio is None and "nothing measurable" in note


@given(comm=st.floats(0.01, 1e3), compute=st.floats(0.01, 1e3), total=st.floats(0.0, 3e3), spread=st.floats(0.0, 1.0))
def test_ratios_stay_in_range(comm: float, compute: float, total: float, spread: float) -> None:
    _, _, eff, ratio, _ = overlap_metrics(comm, compute, total, spread)
    assert eff is None or 0.0 <= eff <= 1.0
    assert ratio is None or 0.0 <= ratio <= 1.0


def test_world_of_one_says_there_is_nothing_to_hide() -> None:
    """nproc=1: a world of one in this process; its all_reduce moves nothing, and the record says why there is no
    efficiency instead of printing noise."""
    (r,) = run_overlap_benchmark(
        comm_bytes=[4096],
        compute_durations_ms=[20],
        output_dir=None,
        warmup_iters=1,
        benchmark_iters=5,
        nproc=1,
        backend="gloo",
    )
    assert r.world_size == 1 and r.backend_kind == "gloo"
    if r.overlap_efficiency is None:
        assert "nothing measurable to hide" in r.note
    _check_row(r.to_row())
