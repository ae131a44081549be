"""The ctypes binding against the real libnccl of this environment (the CUDA torch wheel brings it): every declared
symbol resolves, the version is the library's, errors carry NCCL's own words. None of this needs a GPU."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

import nccl_tasks
import pytest
import torch
import torch.distributed as dist
from sagellm_protocol import ReduceOp

from sagellm_comm.launch import launch
from sagellm_comm_nccl.binding import (
    LibraryNotFound,
    NcclError,
    decode_version,
    find_library,
    library_candidates,
    reduce_op_code,
)
from sagellm_comm_nccl.binding.api import FUNCTIONS, NCCL_UNIQUE_ID_BYTES

pytestmark = pytest.mark.skipif(
    getattr(torch.version, "hip", None) is not None or torch.version.cuda is None,
    reason="needs a CUDA build of torch (it brings libnccl)",
)


def _nccl_wheel_version() -> str | None:
    for dist_name in ("nvidia-nccl-cu13", "nvidia-nccl-cu12", "nvidia-nccl-cu11"):
        try:
            return version(dist_name)
        except PackageNotFoundError:
            continue
    return None


def test_finds_the_library_torch_loaded() -> None:
    lib = find_library()
    with open("/proc/self/maps") as maps:
        mapped = {line.split()[-1] for line in maps if "libnccl" in line}
    assert lib.path in mapped, f"the binding loaded {lib.path}, torch mapped {mapped}: two NCCLs in one process"
    assert lib.source.startswith("already loaded")


def test_every_declared_symbol_resolves_with_its_signature() -> None:
    lib = find_library()
    raw = ctypes.CDLL(lib.path)
    for fn in FUNCTIONS:
        assert lib.has(fn.name), fn.name
        assert getattr(raw, fn.name) is not None
        typed = lib._fns[fn.name]
        assert typed.restype is fn.restype and list(typed.argtypes) == list(fn.argtypes), fn.name


def test_version_is_the_librarys_and_torchs() -> None:
    lib = find_library()
    assert lib.version >= (2, 10, 0)
    assert lib.version == tuple(torch.cuda.nccl.version()), "the binding and torch use different NCCL versions"
    wheel = _nccl_wheel_version()
    if wheel is not None:
        assert lib.version_string == ".".join(wheel.split(".")[:3]), f"nvidia-nccl wheel {wheel}"


def test_decode_version() -> None:
    assert decode_version(23007) == (2, 30, 7)
    assert decode_version(22809) == (2, 28, 9)
    assert decode_version(2708) == (2, 7, 8)  # the pre-2.9 encoding


def test_errors_carry_nccls_words() -> None:
    lib = find_library()
    assert "invalid argument" in lib.error_string(4).lower()
    with pytest.raises(NcclError) as info:
        lib.call("ncclGetVersion", None)  # a NULL out-pointer: NCCL refuses it
    assert info.value.result == "ncclInvalidArgument" and "ncclGetVersion" in str(info.value)


def test_unique_ids_are_fresh_and_full_size() -> None:
    lib = find_library()
    a, b = lib.unique_id(), lib.unique_id()
    assert len(a) == len(b) == NCCL_UNIQUE_ID_BYTES and a != b


@pytest.mark.multirank
def test_unique_id_travels_through_the_side_channel() -> None:
    r0, r1 = launch(nccl_tasks.unique_id_through_side_channel, 2, timeout=120, env={"SAGELLM_COMM_PLUGINS": "none"})
    assert r0 == r1, "every rank must form its communicator from the same id"
    world, group = r0[:NCCL_UNIQUE_ID_BYTES], r0[NCCL_UNIQUE_ID_BYTES:]
    assert len(world) == len(group) == NCCL_UNIQUE_ID_BYTES and world != group


def test_explicit_path_wins_and_does_not_fall_back(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SAGELLM_COMM_NCCL_LIBRARY", str(tmp_path / "libnccl.so.2"))
    assert library_candidates()[0].path == str(tmp_path / "libnccl.so.2")
    with pytest.raises(LibraryNotFound) as info:
        find_library()
    assert "SAGELLM_COMM_NCCL_LIBRARY" in str(info.value) and "tried: " + str(tmp_path) in str(info.value)


def test_a_library_without_the_nccl_api_is_refused(monkeypatch) -> None:
    libc = ctypes.util.find_library("c")
    monkeypatch.setenv("SAGELLM_COMM_NCCL_LIBRARY", libc)
    with pytest.raises(LibraryNotFound, match="does not export ncclGetErrorString"):
        find_library()


def test_reduce_op_names() -> None:
    assert [reduce_op_code(o) for o in ("sum", "prod", "max", "min", "avg")] == [0, 1, 2, 3, 4]
    assert reduce_op_code(ReduceOp.AVG) == 4
    assert reduce_op_code(dist.ReduceOp.MAX) == 2
    with pytest.raises(ValueError, match="band"):
        reduce_op_code("band")


def test_binding_imports_without_the_core() -> None:
    """The GPU machine's Python cannot import isagellm-protocol (3.11 bytecode): the binding must not need it."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('sagellm_comm', 'sagellm_protocol'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from sagellm_comm_nccl.binding import find_library, NcclCommunicator\n"
        "print(find_library().version_string)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == find_library().version_string
