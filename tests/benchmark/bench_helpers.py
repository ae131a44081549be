"""Helpers of the benchmark tests: the repository root (``python -m benchmark.*`` runs from there) and a
subprocess runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def run_py(
    *args: str, cwd: Path = ROOT, timeout: float = 150, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a fresh interpreter (stdout and stderr captured; plugin selection variables cleared)."""
    skip = ("SAGELLM_COMM_PLUGINS", "SAGELLM_COMM_DISABLE_PLUGINS")
    full_env = {k: v for k, v in os.environ.items() if k not in skip}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
