"""The native engine's protocol in C alone (csrc/tests/stress.c): forked ranks over one shared mapping run
thousands of all_reduces (direct, split, multi-chunk; float32 sum, int32 max) and check every element -- built with
the host compiler, and cross-compiled for aarch64 and run under qemu-user where both tools are installed
(``apt-get install gcc-aarch64-linux-gnu qemu-user``). qemu runs the aarch64 code on this x86 host, so it checks the
build and the protocol's logic on that architecture, not its weaker memory ordering: that needs Arm hardware."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parent.parent / "csrc"
SOURCES = [CSRC / "tests" / "stress.c", CSRC / "sync.c", CSRC / "reduce.c", CSRC / "allreduce.c"]


def _build(cc: str, out: Path, *extra: str) -> None:
    cmd = [cc, "-O2", "-std=gnu11", "-Wall", "-Werror", *extra, "-o", str(out), *map(str, SOURCES)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def host_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler on this host")
    out = tmp_path_factory.mktemp("stress") / "stress"
    _build(cc, out)
    return out


@pytest.mark.parametrize("ranks,iters", [(2, 3000), (3, 2000), (4, 600)])
def test_native_protocol_under_stress(host_binary: Path, ranks: int, iters: int) -> None:
    proc = subprocess.run([str(host_binary), str(ranks), str(iters)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stdout + proc.stderr


def test_native_engine_builds_and_runs_for_aarch64_under_qemu(tmp_path: Path) -> None:
    cc, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
    if cc is None or qemu is None:
        pytest.skip("needs aarch64-linux-gnu-gcc and qemu-aarch64 (apt-get install gcc-aarch64-linux-gnu qemu-user)")
    out = tmp_path / "stress-aarch64"
    _build(cc, out, "-static")
    proc = subprocess.run([qemu, str(out), "3", "300"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stdout + proc.stderr
