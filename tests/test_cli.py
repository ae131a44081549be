"""The ``sagellm-comm`` command line: ``info`` (including failed plugins) and ``bench`` (collective sweeps; the
full bench suite is in tests/benchmark/).


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

from sagellm_comm.benchmark import RunInfo, merge_rank_results, summarize
from sagellm_comm.benchmark.report import summary_table
from sagellm_comm.cli.main import main

CLI = [sys.executable, "-m", "sagellm_comm.cli.main"]
BENCH_COLUMNS = ("op", "backend", "algo", "size", "count", "time (us)", "p99 (us)", "algbw (GB/s)", "busbw (GB/s)")
COMPARE_COLUMNS = ("raw (us)", "speedup")


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
        "[sagellm_comm.plugins]\nbroken = sagellm_no_such_module_for_cli_test:plugin\n"
    )
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
    assert set(data) == {"versions", "plugins", "backends", "auto"}
    assert data["auto"]["device"] == "cpu" and data["auto"]["backend"] in {b["name"] for b in data["backends"]}
    assert data["auto"]["reason"].startswith(f"{data['auto']['backend']}: ")
    assert {"sagellm_comm", "torch", "isagellm-protocol", "python"} <= set(data["versions"])
    plugins = {p["name"]: p for p in data["plugins"]}
    assert plugins["gloo"]["status"] == "loaded" and plugins["gloo"]["backends"] == ["gloo"]
    assert plugins["broken"]["status"] == "failed"
    assert "sagellm_no_such_module_for_cli_test" in plugins["broken"]["error"]
    backends = {b["name"]: b for b in data["backends"]}
    assert backends["gloo"]["available"] is True and backends["gloo"]["devices"] == ["cpu"]
    assert backends["broken"]["available"] is False and "failed to load" in backends["broken"]["reason"]


# ----------------------------------------------------------------------------------------------------------
# bench (the full suite of bench tests is in tests/benchmark/)
# ----------------------------------------------------------------------------------------------------------


def test_bench_table_without_compare_or_check() -> None:
    from rich.console import Console

    run = RunInfo(
        backend="gloo",
        backend_type="gloo",
        world_size=2,
        dtype="float32",
        timestamp="t",
        topology_source="discover:core",
    )
    merged = merge_rank_results([{"ours": [1e-4]}, {"ours": [2e-4]}])
    rec = summarize(
        merged,
        op="all_reduce",
        algo="native",
        run=run,
        nbytes=4096,
        requested_bytes=4096,
        count=1024,
        warmup=0,
        calls=1,
        selection_rule_id="default",
        selection_reason="",
    )
    console = Console(width=200, record=True)
    console.print(summary_table([rec]))
    out = console.export_text()
    for col in BENCH_COLUMNS:
        assert col in out
    for col in (*COMPARE_COLUMNS, "#wrong"):
        assert col not in out
    assert "200.0" in out  # the slower rank's time


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
