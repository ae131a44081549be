"""The ``sagellm-comm`` command line: ``info`` (including failed plugins) and ``bench`` (all_reduce sweep).

``info`` and ``bench`` run as real subprocesses (``python -m sagellm_comm.cli.main``); the bad-input cases
call ``main()`` in-process (same parser, no interpreter start-up per case) plus one subprocess for the real
exit code.
No timing is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sagellm_comm.benchmark import AllReduceConfig, summarize_all_reduce
from sagellm_comm.cli.bench import render_records
from sagellm_comm.cli.main import main

CLI = [sys.executable, "-m", "sagellm_comm.cli.main"]
BENCH_COLUMNS = ("size (B)", "backend", "median (us)", "p99 (us)", "algbw (GB/s)", "busbw (GB/s)")
COMPARE_COLUMNS = ("raw median (us)", "ours/raw", "overhead (us)")


def _env(**extra: str) -> dict[str, str]:
    skip = ("SAGELLM_COMM_PLUGINS", "SAGELLM_COMM_DISABLE_PLUGINS")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env.update(extra)
    return env


def _cli(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=_env(**env), capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------------------------------------
# info
# ----------------------------------------------------------------------------------------------------------


def test_info_lists_versions_plugins_and_backends() -> None:
    proc = _cli("info")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for word in ("sagellm_comm", "torch", "isagellm-protocol", "python", "isagellm-comm-gloo", "loaded"):
        assert word in out
    gloo_rows = [line for line in out.splitlines() if line.strip("│ ").startswith("gloo ") and "cpu" in line]
    assert gloo_rows and "yes" in gloo_rows[0], out  # the gloo backend, available


@pytest.fixture
def broken_plugin(tmp_path: Path) -> Path:
    """A distribution on PYTHONPATH whose sagellm_comm.plugins entry point cannot be imported."""
    info = tmp_path / "broken_sagellm_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-sagellm-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[sagellm_comm.plugins]\nbroken = sagellm_no_such_module_for_cli_test:plugin\n")
    return tmp_path


def test_info_shows_failed_plugin_in_full(broken_plugin: Path) -> None:
    proc = _cli("info", PYTHONPATH=str(broken_plugin))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    error = "ModuleNotFoundError: No module named 'sagellm_no_such_module_for_cli_test'"
    assert "failed" in out
    assert error in out  # the whole message, not cut to '…'
    assert "…" not in out
    assert "broken-sagellm-plugin" in out
    assert "isagellm-comm-gloo" in out  # the other plugins load regardless


def test_info_json(broken_plugin: Path) -> None:
    proc = _cli("info", "--json", PYTHONPATH=str(broken_plugin))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"versions", "plugins", "backends"}
    assert {"sagellm_comm", "torch", "isagellm-protocol", "python"} <= set(data["versions"])
    plugins = {p["name"]: p for p in data["plugins"]}
    assert plugins["gloo"]["status"] == "loaded" and plugins["gloo"]["backends"] == ["gloo"]
    assert plugins["broken"]["status"] == "failed"
    assert "sagellm_no_such_module_for_cli_test" in plugins["broken"]["error"]
    backends = {b["name"]: b for b in data["backends"]}
    assert backends["gloo"]["available"] is True and backends["gloo"]["devices"] == ["cpu"]
    assert backends["broken"]["available"] is False and "failed to load" in backends["broken"]["reason"]


# ----------------------------------------------------------------------------------------------------------
# bench
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.multirank
@pytest.mark.timeout(180)
def test_bench_two_ranks_against_raw_torch(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    proc = _cli("bench", "--nproc", "2", "--sizes", "4K", "64K", "--iters", "5", "--warmup", "2",
                "--json", str(out_json), timeout=170)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for col in BENCH_COLUMNS + COMPARE_COLUMNS:
        assert col in out, out
    rows = [line for line in out.splitlines() if " gloo " in line and ("4096" in line or "65536" in line)]
    assert len(rows) == 2, out
    assert "4 KiB" in rows[0] and "64 KiB" in rows[1]
    assert "[2/2]" in proc.stderr  # progress, on stderr only
    assert "[1/2]" not in out

    doc = json.loads(out_json.read_text())
    assert doc["config"]["nproc"] == 2 and doc["config"]["backend"] == "gloo"
    records = doc["records"]
    assert [r["bytes_transferred"] for r in records] == [4096, 65536]
    for r in records:
        assert r["op"] == "all_reduce" and r["group_id"] == "world" and r["world_size"] == 2
        assert r["iters"] == 5 and r["warmup"] == 2 and r["dtype"] == "float32"
        assert r["elapsed_ms"] > 0 and r["p99_us"] >= r["median_us"] > 0
        assert r["raw_median_us"] > 0
        assert r["ratio"] == pytest.approx(r["median_us"] / r["raw_median_us"])
        assert r["overhead_us"] == pytest.approx(r["median_us"] - r["raw_median_us"])
        algbw = r["bytes_transferred"] / (r["elapsed_ms"] / 1e3) / 1e9
        assert r["algo_bandwidth_gbps"] == pytest.approx(algbw)
        assert r["bus_bandwidth_gbps"] == pytest.approx(r["algo_bandwidth_gbps"])  # 2(n-1)/n = 1 for n = 2


def test_bench_table_without_compare(capsys: pytest.CaptureFixture[str]) -> None:
    rec = summarize_all_reduce(4096, [{"ours": [1e-4]}, {"ours": [2e-4]}], backend="gloo", dtype="float32",
                               warmup=1)
    render_records([rec], AllReduceConfig(backend="gloo", sizes=(4096,), compare="none", iters=1, warmup=1))
    out = capsys.readouterr().out
    for col in BENCH_COLUMNS:
        assert col in out
    for col in COMPARE_COLUMNS:
        assert col not in out
    assert "200.0" in out  # the slower rank's time


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--nproc", "0"], "--nproc"),
        (["--nproc", "65"], "--nproc"),
        (["--nproc", "two"], "--nproc"),
        (["--sizes", "4X"], "invalid size '4X'"),
        (["--sizes", "0"], "invalid size '0'"),
        (["--sizes", "6"], "not a multiple"),
        (["--dtype", "complex64"], "unknown dtype 'complex64'"),
        (["--backend", "nope"], "unknown comm backend 'nope'"),
        (["--iters", "0"], "--iters"),
        (["--warmup", "-1"], "--warmup"),
        (["--compare", "mpi"], "--compare"),
        (["--json", "/nonexistent-dir/x.json"], "--json"),
    ],
)
def test_bench_bad_input_exits_2_with_one_line(args: list[str], needle: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", *args])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("sagellm-comm bench: error:") and needle in lines[0]
    assert captured.out == ""


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_bench_unknown_backend_subprocess() -> None:
    proc = _cli("bench", "--backend", "nope")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "unknown comm backend 'nope'" in lines[0] and "comm_backend_not_supported" in lines[0]
    assert proc.stdout == ""
