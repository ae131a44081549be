"""benchmark/shm_native.py: the shm engine's native path against its Python path and raw Gloo, with the floors
measured in the same run (the numbers are not checked: only that every contender ran, was right and is reported
with the ratios the table claims)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_helpers import run_py

from sagellm_comm_cxl_ub import native

pytestmark = [
    pytest.mark.multirank,
    pytest.mark.skipif(not native.NATIVE_AVAILABLE, reason=f"no native engine: {native.NATIVE_REASON}"),
]


@pytest.mark.timeout(300)
def test_shm_native_benchmark_writes_the_table(tmp_path: Path) -> None:
    proc = run_py(
        "-m",
        "benchmark.shm_native",
        "--ranks",
        "2",
        "--sizes",
        "4K",
        "64K",
        "--blocks",
        "1",
        "--small-blocks",
        "2",
        "--small-calls",
        "3",
        "--warmup",
        "1",
        "--copy-mib",
        "8",
        "--ping-rounds",
        "2000",
        "--output-dir",
        str(tmp_path),
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (md,) = tmp_path.glob("shm_native_*.md")
    (js,) = tmp_path.glob("shm_native_*.json")
    text = md.read_text()
    assert "floor (a)" in text and "floor (b)" in text
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| 2 |")]
    assert [r[1].strip() for r in rows] == ["4 KiB", "64 KiB"]
    assert all(r[-1].strip() == "none" for r in rows)  # every contender's result was right
    doc = json.loads(js.read_text())
    assert doc["ping_pong_s"] > 0 and doc["copy_bps"]["2"] > 0
    for row, cells in zip(doc["results"]["2"], rows, strict=True):
        us = row["us"]
        assert set(us) == {"python", "native", "raw gloo"} and min(us.values()) > 0
        assert float(cells[5].strip().rstrip("x")) == pytest.approx(us["python"] / us["native"], abs=0.006)
        assert float(cells[7].strip().rstrip("x")) == pytest.approx(us["native"] / (doc["ping_pong_s"] * 1e6), abs=0.06)
