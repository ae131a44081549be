"""``tools/gpu-check`` on this machine: the binding-level part runs without a GPU, then a clear "no GPU" exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU: gpu-check runs its GPU part here")
@pytest.mark.skipif(torch.version.cuda is None, reason="needs a CUDA build of torch (it brings libnccl)")
def test_without_a_gpu_the_binding_checks_run_and_the_exit_says_so(tmp_path: Path) -> None:
    report = tmp_path / "gpu-check.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gpu-check"), "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "no GPU" in proc.stdout
    data = json.loads(report.read_text())
    rows = {r["check"]: r for r in data["rows"]}
    assert rows["library found, symbols resolve, version"]["status"] == "PASS"
    assert rows["ncclGetUniqueId"]["status"] == "PASS"
    assert rows["gpu checks"]["status"] == "SKIP" and "found no CUDA device" in rows["gpu checks"]["detail"]
    assert data["library"]["version"] == ".".join(map(str, torch.cuda.nccl.version()))
