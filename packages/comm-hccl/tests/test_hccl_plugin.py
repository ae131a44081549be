"""The hccl plugin: registration, availability (and its reasons), refusal without torch_npu, declared capabilities.

This host has no NPU and no torch_npu: the tests that expect "torch_npu not installed" skip where torch_npu is
installed, and the probe's other branches are unit tests of the probe function (its imports replaced), never a
stand-in NPU for a backend run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.util import find_spec
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from sagellm_protocol import ReduceOp

from sagellm_comm import BackendNotSupportedError, get_comm_backend, list_comm_backends
from sagellm_comm.capabilities import BITWISE_OPS
from sagellm_comm.errors import ErrorCode
from sagellm_comm_hccl import probes
from sagellm_comm_hccl.backend import HcclBackend

TORCH_NPU_INSTALLED = find_spec("torch_npu") is not None
needs_no_torch_npu = pytest.mark.skipif(
    TORCH_NPU_INSTALLED, reason="torch_npu is installed here: the 'not installed' path cannot be observed"
)
NOT_INSTALLED = "torch_npu not installed"


def _status() -> Any:
    statuses = {s.name: s for s in list_comm_backends()}
    assert "hccl" in statuses, f"backend hccl is not registered; known: {sorted(statuses)}"
    return statuses["hccl"]


# -- registration and availability -----------------------------------------------------------------------------------
def test_registered_for_npu_tensors() -> None:
    status = _status()
    assert status.devices == ("npu",)
    assert status.plugin == "hccl"
    assert status.priority == 20


@needs_no_torch_npu
def test_unavailable_without_torch_npu_says_what_to_install() -> None:
    status = _status()
    assert not status.available
    assert status.reason.startswith(NOT_INSTALLED), status.reason
    base = torch.__version__.split("+", 1)[0]
    assert f"torch-npu=={base}.*" in status.reason and torch.__version__ in status.reason
    assert "does not pull it" in status.reason
    assert status.reason == probes.hccl_available()[1]


@needs_no_torch_npu
def test_get_comm_backend_refuses_with_the_reason() -> None:
    with pytest.raises(BackendNotSupportedError) as info:
        get_comm_backend("hccl")
    assert info.value.code == ErrorCode.COMM_BACKEND_NOT_SUPPORTED
    assert NOT_INSTALLED in info.value.message


@needs_no_torch_npu
def test_auto_for_npu_tensors_names_hccl_and_its_reason() -> None:
    with pytest.raises(BackendNotSupportedError) as info:
        get_comm_backend("auto", device="npu:0")
    assert info.value.code == ErrorCode.COMM_BACKEND_NOT_SUPPORTED
    assert f"hccl: {NOT_INSTALLED}" in info.value.message


@needs_no_torch_npu
def test_direct_construction_is_refused_with_the_reason() -> None:
    """Built without the registry (which checks availability first), the class refuses too: torch knows the
    ``npu`` device only through torch_npu."""
    with pytest.raises(BackendNotSupportedError) as info:
        HcclBackend().init_process_group(world_size=1, rank=0)
    assert info.value.code == ErrorCode.COMM_BACKEND_NOT_SUPPORTED
    assert NOT_INSTALLED in info.value.message


def test_init_refuses_when_the_probe_says_no(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard in ``_init`` (torch_npu present, no NPU): it raises the probe's reason before touching
    torch.distributed. A unit test of the guard, with the probe's answer replaced; no backend runs."""
    import sagellm_comm_hccl.backend as backend_module

    monkeypatch.setattr(backend_module, "load_torch_npu", lambda: (SimpleNamespace(), ""))
    monkeypatch.setattr(backend_module, "hccl_available", lambda: (False, "torch_npu 2.5.1 found no NPU device"))
    comm = HcclBackend.__new__(HcclBackend)
    with pytest.raises(BackendNotSupportedError, match="found no NPU device") as info:
        comm._init(None, {})  # type: ignore[arg-type]
    assert info.value.code == ErrorCode.COMM_BACKEND_NOT_SUPPORTED


# -- the probe's other branches (unit tests of the probe function) ---------------------------------------------------
def _fake_spec(name: str) -> Any:
    return SimpleNamespace(name=name) if name == "torch_npu" else find_spec(name)


def test_probe_reports_a_failing_torch_npu_import(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_import(name: str) -> Any:
        raise ImportError("libhccl.so: cannot open shared object file")

    monkeypatch.setattr(probes, "find_spec", _fake_spec)
    monkeypatch.setattr(probes, "import_module", failing_import)
    ok, reason = probes.hccl_available()
    assert not ok
    assert "torch_npu is installed but importing it failed" in reason
    assert "libhccl.so" in reason and "set_env.sh" in reason


def test_probe_reports_no_device(monkeypatch: pytest.MonkeyPatch) -> None:
    module = SimpleNamespace(__version__="2.5.1", npu=SimpleNamespace(device_count=lambda: 0))
    monkeypatch.setattr(probes, "find_spec", _fake_spec)
    monkeypatch.setattr(probes, "import_module", lambda name: module)
    assert probes.hccl_available() == (False, "torch_npu 2.5.1 found no NPU device")


def test_probe_counts_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    module = SimpleNamespace(
        __version__="2.5.1",
        npu=SimpleNamespace(device_count=lambda: 8),
        distributed=SimpleNamespace(is_hccl_available=lambda: True),
    )
    monkeypatch.setattr(probes, "find_spec", _fake_spec)
    monkeypatch.setattr(probes, "import_module", lambda name: module)
    assert probes.hccl_available() == (True, "torch_npu 2.5.1, 8 NPU device(s)")


def test_probe_reports_missing_torch_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.distributed, "is_available", lambda: False)
    assert probes.hccl_available() == (False, "this torch build has no torch.distributed")


# -- declared capabilities -------------------------------------------------------------------------------------------
def test_engine_settings() -> None:
    assert HcclBackend.name == "hccl"
    assert HcclBackend.torch_backend == "hccl"
    assert HcclBackend.device_type == "npu"
    assert HcclBackend.native_avg is False  # torch_npu 2.4.0-6.0.0 has no AVG: the base class sums and divides


def test_capabilities_are_what_torch_npu_supports() -> None:
    caps = HcclBackend.capabilities
    assert caps.devices == frozenset({"npu"})
    assert "gather" not in caps.ops  # ProcessGroupHCCL: "does not support gather"
    assert "batch_p2p" in caps.ops and HcclBackend.fused_batch_p2p  # one HcclBatchSendRecv, never a sequential ring
    assert {"all_reduce", "broadcast", "send", "recv", "barrier"} <= caps.ops
    assert caps.p2p_tags is False  # ProcessGroupHCCL::send/recv ignore the tag
    assert caps.non_contiguous and caps.async_ops and caps.concurrent_progress and caps.sub_groups
    assert not caps.reduce_ops & BITWISE_OPS  # "Cannot use ReduceOp.BAND with HCCL"
    reducible = frozenset().union(*caps.reduce_support.values())
    assert reducible <= caps.dtypes
    assert not reducible & {torch.uint8, torch.bool, torch.float64}  # not reducible on A2/A3 by every collective
    assert torch.bfloat16 not in caps.reduce_support[ReduceOp.PROD]  # HCCL: prod does not support bfp16
    assert caps.reduce_support[ReduceOp.AVG] == {torch.float32, torch.float16, torch.bfloat16}


def test_undeclared_tag_and_op_are_refused_before_any_engine_call() -> None:
    """The core checks declarations first, so the refusal needs no NPU (the backend is never initialized)."""
    comm = HcclBackend.__new__(HcclBackend)
    with pytest.raises(BackendNotSupportedError, match="does not support gather") as info:
        comm._require_op("gather")
    assert info.value.code == ErrorCode.COMM_BACKEND_NOT_SUPPORTED
    with pytest.raises(BackendNotSupportedError, match="non-zero tag"):
        comm._check_tag(3, "send")


# -- CLI and import weight -------------------------------------------------------------------------------------------
INFO_AND_MODULES = """
import json, sys
from sagellm_comm.cli.info import collect_info
data = collect_info()
heavy = ("sagellm_comm_hccl.backend", "sagellm_comm_hccl.npu_topology", "torch_npu")
print(json.dumps({"backends": data["backends"], "heavy": [m for m in heavy if m in sys.modules]}))
"""


def test_info_lists_hccl_with_its_reason_and_imports_nothing_heavy() -> None:
    done = subprocess.run(
        [sys.executable, "-c", INFO_AND_MODULES], capture_output=True, text=True, timeout=120, check=True
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    rows = {b["name"]: b for b in data["backends"]}  # what `sagellm-comm info` prints
    assert rows["hccl"]["devices"] == ["npu"]
    assert rows["hccl"]["reason"] == _status().reason
    if not TORCH_NPU_INSTALLED:
        assert NOT_INSTALLED in rows["hccl"]["reason"]
        assert data["heavy"] == [], data["heavy"]  # listing ran the probe, which imports torch_npu only if installed
    else:
        assert "sagellm_comm_hccl.backend" not in data["heavy"]
