"""Build a package's wheel and install it into a private directory, as a user or a vendor would.

Used by tests that prove a package installs and registers from its wheel alone (the new-plugin skeleton, the
out-of-tree vendor copies). ``uv build`` builds the wheel; ``uv pip install --target`` installs it (without its
dependencies: the test's own environment already has the core) into a directory that only the subprocesses given
``env_with(target)`` see, so the shared environment is never modified.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _uv() -> str:
    found = shutil.which("uv")
    if found is None:
        raise RuntimeError("uv is not on PATH; the project's tests need it (python3 -m pip install uv)")
    return found


def build_wheel(source: Path, out_dir: Path, timeout: float = 300) -> Path:
    """Build ``source`` (a directory with a pyproject.toml) into ``out_dir``; return the wheel's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.glob("*.whl"))
    proc = subprocess.run(
        [_uv(), "build", "--wheel", "--out-dir", str(out_dir), str(source)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"uv build {source} failed:\n{proc.stdout}\n{proc.stderr}")
    built = sorted(set(out_dir.glob("*.whl")) - before)
    assert len(built) == 1, f"expected one new wheel in {out_dir}, got {built}"
    return built[0]


def install_into(target: Path, *wheels: Path, timeout: float = 300) -> None:
    """Install ``wheels`` (no dependencies) into the directory ``target``."""
    proc = subprocess.run(
        [_uv(), "pip", "install", "--python", sys.executable, "--no-deps", "--target", str(target), *map(str, wheels)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"uv pip install --target {target} failed:\n{proc.stdout}\n{proc.stderr}")


def env_with(target: Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that sees what was installed into ``target``."""
    path = os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_python(
    args: list[str], env: dict[str, str], timeout: float = 600, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=str(cwd) if cwd else None
    )
