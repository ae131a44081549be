"""Finding libnccl (or librccl) in this environment, loading it, checking its version, calling it.

The library is never downloaded: it is the one torch already uses. Search order:

1. ``SAGELLM_COMM_NCCL_LIBRARY`` (``SAGELLM_COMM_RCCL_LIBRARY`` for RCCL): an explicit path wins;
2. the copy already mapped into this process (importing a CUDA build of torch maps the libnccl its
   ``libtorch_cuda.so`` links; a ROCm build maps librccl), so the binding and torch share one library;
3. the ``nvidia-nccl-cu*`` wheel's ``nvidia/nccl/lib`` (what CUDA builds of torch from PyPI depend on);
4. torch's own ``lib`` folder (builds that bundle the library, ROCm wheels' ``librccl.so``);
5. ROCm's install (``$ROCM_PATH/lib``, ``/opt/rocm/lib``) for RCCL;
6. the system loader (``ldconfig``'s cache, ``LD_LIBRARY_PATH``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sagellm_comm_nccl.binding.api import FUNCTIONS, OPTIONAL_FUNCTIONS, RESULT_NAMES, ncclUniqueId

__all__ = [
    "MIN_VERSION",
    "LibraryNotFound",
    "NcclError",
    "NcclLibrary",
    "decode_version",
    "find_library",
    "library_candidates",
]

MIN_VERSION = (2, 10, 0)  # bfloat16 and ncclAvg
ENV = {"nccl": "SAGELLM_COMM_NCCL_LIBRARY", "rccl": "SAGELLM_COMM_RCCL_LIBRARY"}
STEMS = {"nccl": "libnccl.so", "rccl": "librccl.so"}
LOADER_NAMES = {"nccl": ("libnccl.so.2", "libnccl.so"), "rccl": ("librccl.so.1", "librccl.so")}
BRINGS = {
    "nccl": "a CUDA build of torch from PyPI (its nvidia-nccl dependency brings it)",
    "rccl": "a ROCm build of torch (its wheel bundles librccl) or ROCm itself",
}


class LibraryNotFound(RuntimeError):
    """No usable library: none found, one that lacks the NCCL API, or one older than ``MIN_VERSION``."""


class NcclError(RuntimeError):
    """A call returned an ``ncclResult_t`` other than ``ncclSuccess``."""

    def __init__(self, function: str, code: int, text: str, detail: str = "") -> None:
        self.function, self.code = function, code
        self.result = RESULT_NAMES.get(code, f"ncclResult {code}")
        message = f"{function} failed: {self.result} ({text})"
        super().__init__(f"{message}: {detail}" if detail else message)

    @property
    def is_timeout_like(self) -> bool:
        return self.code == 6  # ncclRemoteError: a peer failed or went away


def decode_version(code: int) -> tuple[int, int, int]:
    """``ncclGetVersion``'s integer: ``X*10000 + Y*100 + Z`` since 2.9, ``X*1000 + Y*100 + Z`` before."""
    if code >= 10000:
        return code // 10000, code % 10000 // 100, code % 100
    return code // 1000, code % 1000 // 100, code % 100


@dataclass(frozen=True)
class Candidate:
    path: str
    source: str


def _mapped(stem: str) -> list[str]:
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if stem in line}
    except OSError:
        return []
    return sorted(p for p in paths if os.path.basename(p).startswith(stem) and os.path.isfile(p))


def _package_dirs(name: str) -> list[Path]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])]


def _files(folder: Path, stem: str) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir() if p.name.startswith(stem) and p.is_file())


def library_candidates(flavor: str = "nccl") -> list[Candidate]:
    """Every place the library may be, in search order (see the module docstring); not loaded yet."""
    if flavor not in STEMS:
        raise ValueError(f"flavor must be 'nccl' or 'rccl', got {flavor!r}")
    stem, out = STEMS[flavor], []
    explicit = os.environ.get(ENV[flavor])
    if explicit:
        out.append(Candidate(explicit, f"${ENV[flavor]}"))
    out += [Candidate(p, "already loaded in this process (torch's)") for p in _mapped(stem)]
    if flavor == "nccl":
        for base in _package_dirs("nvidia"):
            out += [Candidate(p, "the nvidia-nccl wheel") for p in _files(base / "nccl" / "lib", stem)]
    for base in _package_dirs("torch"):
        out += [Candidate(p, "torch's lib folder") for p in _files(base / "lib", stem)]
    if flavor == "rccl":
        roots = [os.environ.get("ROCM_PATH", ""), "/opt/rocm"]
        for root in dict.fromkeys(r for r in roots if r):
            out += [Candidate(p, "the ROCm install") for p in _files(Path(root) / "lib", stem)]
    found = ctypes.util.find_library(flavor)
    for name in ([found] if found else []) + list(LOADER_NAMES[flavor]):
        out.append(Candidate(name, "the system loader"))
    seen: set[str] = set()
    unique = []
    for c in out:
        key = os.path.realpath(c.path) if os.path.isabs(c.path) else c.path
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def find_library(flavor: str = "nccl") -> NcclLibrary:
    """The first candidate that loads and passes the checks; ``LibraryNotFound`` says what each one gave."""
    tried = []
    for cand in library_candidates(flavor):
        try:
            return NcclLibrary.load(cand.path, flavor=flavor, source=cand.source)
        except (OSError, LibraryNotFound) as exc:
            tried.append(f"{cand.path} ({cand.source}): {exc}")
            if cand.source.startswith("$"):
                break  # an explicit path that fails is an error, not a reason to take another library
    raise LibraryNotFound(
        f"no usable {STEMS[flavor]} found; tried: {'; '.join(tried) or 'nothing'}. Install {BRINGS[flavor]}, or set "
        f"{ENV[flavor]}=/path/to/{LOADER_NAMES[flavor][0]}"
    )


class NcclLibrary:
    """One loaded library with every function of ``api.FUNCTIONS`` resolved and typed; shared per path."""

    _loaded: ClassVar[dict[str, NcclLibrary]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str, flavor: str = "nccl", source: str = "given") -> None:
        self.path, self.flavor, self.source = path, flavor, source
        self._lib = ctypes.CDLL(path)
        missing = []
        self._fns: dict[str, Any] = {}
        for fn in FUNCTIONS + OPTIONAL_FUNCTIONS:
            try:
                f = getattr(self._lib, fn.name)
            except AttributeError:
                if fn in FUNCTIONS:
                    missing.append(fn.name)
                continue
            f.restype, f.argtypes = fn.restype, list(fn.argtypes)
            self._fns[fn.name] = f
        if missing:
            raise LibraryNotFound(f"{path} does not export {', '.join(missing)}: not an NCCL/RCCL library")
        raw = ctypes.c_int()
        self.call("ncclGetVersion", ctypes.byref(raw))
        self.version_code = raw.value
        self.version = decode_version(raw.value)
        if self.version < MIN_VERSION:
            raise LibraryNotFound(
                f"{path} is {flavor.upper()} {self.version_string}; sagellm-comm needs "
                f"{'.'.join(map(str, MIN_VERSION))} or newer (bfloat16, ncclAvg)"
            )

    @classmethod
    def load(cls, path: str, flavor: str = "nccl", source: str = "given") -> NcclLibrary:
        with cls._lock:
            lib = cls._loaded.get(path)
            if lib is None:
                lib = cls._loaded[path] = cls(path, flavor, source)
            return lib

    @property
    def version_string(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def resolved(self) -> list[str]:
        """The names of the functions resolved in this library."""
        return sorted(self._fns)

    def has(self, name: str) -> bool:
        return name in self._fns

    def error_string(self, code: int) -> str:
        text = self._fns["ncclGetErrorString"](code)
        return text.decode(errors="replace") if text else RESULT_NAMES.get(code, str(code))

    def last_error(self, comm: Any = None) -> str:
        fn = self._fns.get("ncclGetLastError")
        if fn is None:
            return ""
        text = fn(comm)
        return text.decode(errors="replace") if text else ""

    def call(self, name: str, *args: Any, comm: Any = None) -> None:
        """Call ``name``; a result other than ``ncclSuccess`` raises ``NcclError`` with NCCL's own words."""
        code = self._fns[name](*args)
        if code != 0:
            raise NcclError(name, code, self.error_string(code), self.last_error(comm))

    def unique_id(self) -> bytes:
        """A fresh ``ncclUniqueId`` (128 bytes) for a new communicator; needs no GPU."""
        uid = ncclUniqueId()
        self.call("ncclGetUniqueId", ctypes.byref(uid))
        return bytes(uid.internal)

    def __repr__(self) -> str:
        return f"<NcclLibrary {self.flavor} {self.version_string} at {self.path} ({self.source})>"
