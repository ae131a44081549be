"""``python -m benchmark.run_bench`` end to end: self-launched ranks (two backends, two ops, two algorithms,
--check, --compare torch, --plot in one command), torchrun with 2 processes, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from bench_helpers import run_py

from sagellm_comm.benchmark import SEED_FIELDS
from sagellm_comm.benchmark.records import FIELDS
from sagellm_comm.cli.main import main
from sagellm_comm.launch import free_port

pytestmark = pytest.mark.multirank


@pytest.fixture(scope="module")
def two_backends(faulty_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """One command: gloo and the faulty backend, all_reduce and reduce_scatter, native and ring, checked,
    interleaved with raw torch.distributed, charted."""
    out = tmp_path_factory.mktemp("two_backends")
    proc = run_py(
        "-m",
        "benchmark.run_bench",
        "--nproc",
        "2",
        "--backend",
        "gloo",
        "faulty",
        "--ops",
        "all_reduce",
        "reduce_scatter",
        "--algo",
        "native",
        "ring",
        "--message-sizes",
        "1001",
        "--warmup",
        "1",
        "--iters",
        "3",
        "--check",
        "--compare",
        "torch",
        "--plot",
        "--output-dir",
        str(out),
        env=faulty_env,
        timeout=170,
    )
    return proc, out


def _rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["results"]


@pytest.mark.timeout(200)
def test_results_have_every_field(two_backends) -> None:
    proc, out = two_backends
    files = sorted(p.name for p in out.iterdir())
    jsons = [p for p in sorted(out.glob("*.json"))]
    assert [p.name.split("_ws2_")[0] for p in jsons] == ["all_reduce", "reduce_scatter"], (files, proc.stderr)
    for path in jsons:
        assert path.with_suffix(".csv").exists() and path.with_suffix(".png").exists()
        doc = json.loads(path.read_text())
        assert doc["schema"].startswith("sagellm-comm/collective-benchmark") and doc["world_size"] == 2
        rows = doc["results"]
        # 2 backends x 2 algorithms
        assert len(rows) == 4
        assert {(r["backend_kind"], r["algo_id"]) for r in rows} == {
            ("gloo", "native"),
            ("gloo", "ring"),
            ("faulty", "native"),
            ("faulty", "ring"),
        }
        for r in rows:
            assert list(r)[: len(SEED_FIELDS)] == list(SEED_FIELDS)
            assert r["world_size"] == 2 and r["data_type"] == "float32"
            assert r["warmup_iters"] == 1 and r["benchmark_iters"] == 3
            assert r["selection_rule_id"] == "explicit" and r["algo_id"] in r["selection_reason"]
            assert r["latency_ms"] > 0 and r["p99_latency_ms"] >= r["latency_ms"]
            assert r["bandwidth_gbps"] == pytest.approx(r["bytes"] / (r["latency_ms"] / 1e3) / 1e9)
            factor = 1.0 if r["op_type"] == "all_reduce" else 0.5  # 2(n-1)/n and (n-1)/n at n = 2
            assert r["bus_bandwidth_gbps"] == pytest.approx(r["bandwidth_gbps"] * factor)
            assert r["raw_engine"] == "torch.distributed/gloo" and r["raw_latency_ms"] > 0
            assert r["speedup_vs_raw"] == pytest.approx(r["raw_latency_ms"] / r["latency_ms"])
            assert r["topology_source"].startswith("discover:")
            assert r["timestamp"][:4].isdigit()
        with path.with_suffix(".csv").open() as f:
            reader = csv.DictReader(f)
            assert tuple(reader.fieldnames or ()) == FIELDS
            assert len(list(reader)) == 4


def test_sizes_elements_units_and_rounding(two_backends) -> None:
    proc, out = two_backends
    ar = _rows(next(out.glob("all_reduce_*.json")))
    assert {r["bytes"] for r in ar} == {4004} and {r["count"] for r in ar} == {1001}  # float32 elements
    assert all(r["size_note"] is None for r in ar)
    rs = _rows(next(out.glob("reduce_scatter_*.json")))
    # 4004 B does not split over 2 ranks x 4 B: rounded down to 4000, and said so
    assert {r["bytes"] for r in rs} == {4000}
    assert all(r["requested_bytes"] == 4004 and "using 4000 B" in r["size_note"] for r in rs)
    assert "note: reduce_scatter: 4004 B is not a multiple of 8 B" in proc.stderr


def test_check_catches_the_faulty_reduction(two_backends) -> None:
    proc, out = two_backends
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "--check found" in proc.stderr and "wrong element(s)" in proc.stderr
    wrong = {
        (r["op_type"], r["backend_kind"], r["algo_id"], r["bytes"]): r["wrong"]
        for p in out.glob("*.json")
        for r in _rows(p)
    }
    # faulty's native all_reduce is off by one everywhere: 1001 elements on each of 2 ranks
    assert wrong[("all_reduce", "faulty", "native", 4004)] == 2 * 1001
    # everything else is right: gloo; ring (built on send/recv) even on faulty; faulty's own reduce_scatter
    bad = {k: v for k, v in wrong.items() if v and not (k[0] == "all_reduce" and k[1:3] == ("faulty", "native"))}
    assert not bad and all(v is not None for v in wrong.values())
    assert "#wrong" in proc.stdout


def test_one_command_charts_two_backends(two_backends) -> None:
    from sagellm_comm.benchmark.plot import load_rows, series

    proc, out = two_backends
    png = next(out.glob("all_reduce_*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = series(load_rows([png.with_suffix(".json")]))["all_reduce"]
    assert {"gloo/native", "gloo/ring", "faulty/native", "faulty/ring"} <= set(lines)
    assert any(label.startswith("raw torch.distributed/gloo") for label in lines)
    assert "wrote" in proc.stderr and str(png) in proc.stderr


@pytest.mark.timeout(150)
def test_torchrun_two_processes(tmp_path: Path) -> None:
    proc = run_py(
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "benchmark.run_bench",
        "--backend",
        "gloo",
        "--message-sizes",
        "1024",
        "4K",
        "--warmup",
        "1",
        "--iters",
        "3",
        "--check",
        "--output-dir",
        str(tmp_path),
        timeout=140,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jsons = list(tmp_path.glob("all_reduce_ws2_*.json"))
    assert len(jsons) == 1 and jsons[0].with_suffix(".csv").exists()  # rank 0 alone writes
    rows = _rows(jsons[0])
    assert [r["bytes"] for r in rows] == [4096]  # 1024 elements and 4K bytes are one message
    assert rows[0]["world_size"] == 2 and rows[0]["wrong"] == 0 and rows[0]["selection_rule_id"] == "default"
    assert proc.stdout.count("all_reduce │ gloo") == 1  # one summary table, from rank 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--ops", "frobnicate"], "unknown op 'frobnicate'"),
        (["--backend", "nope"], "unknown comm backend 'nope'"),
        (["--algo", "nope"], "unknown algorithm 'nope'"),
        (["--algo", "tree", "--ops", "all_gather"], "algorithm 'tree' has no all_gather"),
        (["--nproc", "65"], "--nproc must be in 1..64"),
        (["--nproc", "0"], "--nproc must be in 1..64"),
        (["--message-sizes", "4X"], "invalid size '4X'"),
        (["--message-sizes", "0"], "at least 1"),
        (["--dtype", "complex64"], "unknown dtype 'complex64'"),
        (["--iters", "0"], "--iters"),
        (["--warmup", "-1"], "--warmup"),
        (["--root", "2"], "root must be an int in 0..1"),
        (["--compare", "mpi"], "--compare"),
        (["--selector-config", "/nonexistent/policy.json"], "cannot read selector config"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["bench", *args, "--output-dir", str(out)])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("sagellm-comm bench: error:") and needle in lines[0]
    assert captured.out == "" and not out.exists()


def test_output_dir_not_writable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--output-dir", str(blocker / "sub")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "output dir" in err[0] and "not writable" in err[0]


def test_plot_subcommand_overlays_files(two_backends, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = two_backends
    files = [str(p) for p in sorted(out.glob("*.json"))]
    target = tmp_path / "both.png"
    assert main(["bench", "plot", *files, "-o", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert target.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit) as exc:
        main(["bench", "plot", str(tmp_path / "missing.json")])
    assert exc.value.code == 2
