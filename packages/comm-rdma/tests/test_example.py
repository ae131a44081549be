"""docs/rdma.md's runnable example, examples/rdma_kv_transfer.py, runs as documented and checks its bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "rdma_kv_transfer.py"


def test_the_kv_transfer_example_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("rank 0: wrote 3 blocks to rank 1 over "), lines
    assert lines[1] == "rank 1: slots 0-2 hold blocks 3, 7, 12 (98304 bytes checked)", lines
