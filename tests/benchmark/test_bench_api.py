"""The seed's Python API (``run_all_reduce_benchmark``) in one process, and examples/benchmark_all_reduce.py."""

from __future__ import annotations

import csv
import json
import runpy
from pathlib import Path

import pytest
from bench_helpers import ROOT

from sagellm_comm import get_comm_backend
from sagellm_comm.benchmark import SEED_FIELDS, BenchRecord, run_all_reduce_benchmark


def test_run_all_reduce_benchmark_on_an_initialized_backend(tmp_path: Path) -> None:
    backend = get_comm_backend("gloo")
    backend.init(rank=0, world_size=1, master_addr="localhost", master_port=29500)
    try:
        results = run_all_reduce_benchmark(
            backend=backend,
            message_sizes=[1024, 4096, 16384],
            output_dir=str(tmp_path),
            warmup_iters=2,
            benchmark_iters=5,
            check=True,
        )
        assert backend.is_initialized  # the caller's backend is left as it was
    finally:
        backend.destroy()
    assert [r.bytes for r in results] == [4096, 16384, 65536]  # element counts of float32
    assert all(isinstance(r, BenchRecord) and r.wrong == 0 and r.world_size == 1 for r in results)
    assert all(r.bus_bandwidth_gbps == 0.0 for r in results)  # one rank moves nothing over a bus
    (json_path,) = tmp_path.glob("all_reduce_ws1_*.json")
    rows = json.loads(json_path.read_text())["results"]
    assert [r["bytes"] for r in rows] == [4096, 16384, 65536]
    assert rows[0]["benchmark_iters"] == 5 and rows[0]["warmup_iters"] == 2
    with json_path.with_suffix(".csv").open() as f:
        assert set(SEED_FIELDS) <= set(next(csv.reader(f)))


def test_api_rejects_bad_input_before_running(tmp_path: Path) -> None:
    from sagellm_comm import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="unknown algorithm"):
        run_all_reduce_benchmark(backend="gloo", output_dir=str(tmp_path / "x"), algo="bogus")
    with pytest.raises(InvalidArgumentError, match="nproc"):
        run_all_reduce_benchmark(backend="gloo", output_dir=str(tmp_path / "x"), nproc=0)
    assert not (tmp_path / "x").exists()


def test_example_runs_single_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python examples/benchmark_all_reduce.py`` (its torchrun form is run in docs/benchmark.md's checks)."""
    monkeypatch.chdir(tmp_path)
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    runpy.run_path(str(ROOT / "examples" / "benchmark_all_reduce.py"), run_name="__main__")
    assert capsys.readouterr().out.count("all_reduce gloo/native ws=1") == 3
    assert len(list((tmp_path / ".benchmarks" / "collective").glob("all_reduce_ws1_*.json"))) == 1
