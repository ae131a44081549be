"""Build hook: compiles ``csrc/`` with the system C compiler into ``sagellm_comm_cxl_ub/_native/``:

- ``libsgshm.so``: the engine (no Python ABI; the package calls it through ctypes);
- ``_sgshm.abi3.so``: the same sources plus a stable-ABI CPython entry for the all_reduce call (skipped, with a
  note, where the Python headers are missing: the call then goes through ctypes).

Runs for wheels and for the workspace's editable install (``uv sync``); nothing is downloaded. No compiler, or
``SAGELLM_COMM_BUILD_NATIVE=0``: the build goes on without the library and the engine runs its Python path
(``sagellm-comm info`` says so and why). ``SAGELLM_COMM_BUILD_NATIVE=1`` makes a failed compile an error. A wheel with
the library is tagged for the platform (``cp311-abi3-<platform>``, or ``py3-none-<platform>`` without the
extension).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCES = ("sync.c", "reduce.c", "allreduce.c")
TARGET = "sagellm_comm_cxl_ub/_native/libsgshm.so"
EXTENSION = "sagellm_comm_cxl_ub/_native/_sgshm.abi3.so"
FLAGS = ["-O3", "-std=gnu11", "-fPIC", "-shared", "-Wall", "-fno-strict-aliasing"]


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc:
        return cc
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    return None


class NativeBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        setting = os.environ.get("SAGELLM_COMM_BUILD_NATIVE", "").strip()
        if setting == "0":
            self._say("SAGELLM_COMM_BUILD_NATIVE=0: building without the native engine")
            return
        root = Path(self.root)
        cc = _compiler()
        if cc is None:
            self._failed(setting, "no C compiler found (set CC, or install cc/gcc/clang)")
            return
        error = self._compile(cc, root, TARGET, [root / "csrc" / s for s in SOURCES], [])
        if error is not None:
            self._failed(setting, error)
            return
        built = [TARGET]
        include = sysconfig.get_paths().get("include") or ""
        if Path(include, "Python.h").exists():
            error = self._compile(
                cc, root, EXTENSION, [root / "csrc" / s for s in ("pycall.c", *SOURCES)], [f"-I{include}"]
            )
            if error is None:
                built.append(EXTENSION)
            else:
                self._say(f"the _sgshm extension was not built (all_reduce calls go through ctypes): {error}")
        else:
            self._say(f"no Python.h under {include!r}: the _sgshm extension was not built (ctypes is used)")
        if version != "editable":  # an editable install imports straight from src/, where the files now are
            for target in built:
                build_data["force_include"][str(root / "src" / target)] = target
            build_data["pure_python"] = False
            plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
            build_data["tag"] = f"cp311-abi3-{plat}" if EXTENSION in built else f"py3-none-{plat}"

    @staticmethod
    def _compile(cc: str, root: Path, target: str, sources: list[Path], extra: list[str]) -> str | None:
        out = root / "src" / target
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        cmd = [*shlex.split(cc), *FLAGS, *extra, "-o", str(tmp), *map(str, sources)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as exc:  # CC names no program
            return f"cannot run {cmd[0]!r}: {exc}"
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            return f"{' '.join(cmd)} failed:\n{proc.stderr.strip()}"
        os.replace(tmp, out)  # atomic: a running process keeps the old file's inode
        return None

    def _failed(self, setting: str, error: str) -> None:
        if setting == "1":
            raise RuntimeError(f"isagellm-comm-cxl-ub: native engine: {error}")
        self._say(f"native engine not built, the Python path will be used: {error}")

    @staticmethod
    def _say(text: str) -> None:
        print(f"isagellm-comm-cxl-ub build: {text}", file=sys.stderr)
