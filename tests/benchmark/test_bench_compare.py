"""benchmark/compare.py: ours vs raw Gloo on the same ranks, the copy bound, the markdown table."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
from bench_helpers import ROOT, run_py

pytestmark = pytest.mark.multirank

COLUMNS = (
    "op",
    "backend",
    "ranks",
    "size",
    "ours (us)",
    "raw gloo (us)",
    "ratio (gloo/ours)",
    "our busbw (GB/s)",
    "copy bound (GB/s)",
    "busbw % of copy bound",
)


@pytest.mark.timeout(180)
def test_compare_writes_the_table(tmp_path: Path) -> None:
    proc = run_py(
        "-m",
        "benchmark.compare",
        "--backends",
        "gloo",
        "--world-sizes",
        "2",
        "--ops",
        "all_reduce",
        "all_gather",
        "broadcast",
        "--sizes",
        "4K",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--output-dir",
        str(tmp_path),
        timeout=170,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (md,) = tmp_path.glob("compare_*.md")
    (js,) = tmp_path.glob("compare_*.json")
    text = md.read_text()
    assert proc.stdout.strip() == text.strip()
    header = next(line for line in text.splitlines() if line.startswith("| op |"))
    assert tuple(c.strip() for c in header.strip("|").split("|")) == COLUMNS
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| op |")]
    assert [r.split("|")[1].strip() for r in rows] == ["all_reduce", "all_gather", "broadcast"]
    assert "read + write" in text  # how the copy bound is counted
    doc = json.loads(js.read_text())
    assert doc["copy_bound"]["gbps"] > 0
    for row in doc["rows"]:
        assert row["ranks"] == 2 and row["backend"] == "gloo"
        assert row["ours_us"] > 0 and row["raw_gloo_us"] > 0
        assert row["ratio"] == pytest.approx(row["raw_gloo_us"] / row["ours_us"])
        assert row["busbw_pct_of_copy"] == pytest.approx(100 * row["busbw_gbps"] / doc["copy_bound"]["gbps"])
    for rec in doc["records"]:
        assert rec["raw_engine"] == "torch.distributed/gloo" and rec["benchmark_iters"] == 2


@pytest.fixture
def compare_module():
    """benchmark.compare imported in this process (the repository root is not on pytest's sys.path)."""
    sys.path.insert(0, str(ROOT))
    try:
        module = importlib.import_module("benchmark.compare")
    finally:
        sys.path.remove(str(ROOT))
    return module


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--backends", "nope"], "unknown comm backend 'nope'"),
        (["--world-sizes", "0"], "--world-sizes values must be in 1..64"),
        (["--ops", "frob"], "unknown op 'frob'"),
        (["--sizes", "4X"], "invalid size '4X'"),
        (["--iters", "0"], "--iters must be >= 1"),
    ],
)
def test_compare_bad_input_exits_2(
    compare_module, args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        compare_module.main([*args, "--output-dir", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m benchmark.compare: error:") and needle in err[0]
    assert not (tmp_path / "out").exists()


def test_default_backends_come_from_the_registry(compare_module) -> None:
    from sagellm_comm.registry import list_comm_backends

    names = compare_module.cpu_backends()
    assert "gloo" in names
    assert set(names) == {b.name for b in list_comm_backends() if b.available and "cpu" in b.devices}


def test_auto_scale_by_size(compare_module) -> None:
    auto_scale = compare_module.auto_scale
    small, big = auto_scale(4096), auto_scale(64 << 20)
    assert small.calls > big.calls == 1 and small.blocks > big.blocks
    assert auto_scale(4096, iters=3, warmup=0) == type(small)(blocks=3, calls=small.calls, warmup=0)
