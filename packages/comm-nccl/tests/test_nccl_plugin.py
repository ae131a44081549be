"""The nccl plugin without a GPU: registration, the probe's reasons, refusal at creation, the routing rules of the
direct path, the topology facts. Hardware behaviour is the conformance suite's (it skips here with the reason)."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist

from sagellm_comm import BackendNotSupportedError, get_comm_backend, list_comm_backends
from sagellm_comm.errors import ErrorCode
from sagellm_comm.topology import Topology
from sagellm_comm_nccl import probes
from sagellm_comm_nccl.backend import NcclBackend

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU: the no-GPU reasons do not apply")


def test_registered_for_cuda_tensors() -> None:
    status = {s.name: s for s in list_comm_backends()}["nccl"]
    assert status.devices == ("cuda",) and status.plugin == "nccl" and status.priority == 20


@no_gpu
def test_unavailable_here_with_the_reason() -> None:
    status = {s.name: s for s in list_comm_backends()}["nccl"]
    assert not status.available
    assert status.reason == f"torch {torch.__version__} found no CUDA device"


@no_gpu
def test_creation_is_refused_with_the_reason() -> None:
    with pytest.raises(BackendNotSupportedError) as info:
        get_comm_backend("nccl")
    assert info.value.code is ErrorCode.COMM_BACKEND_NOT_SUPPORTED
    assert f"torch {torch.__version__} found no CUDA device" in info.value.message
    # instantiating the class directly (bypassing the registry) is refused the same way, before any rendezvous
    with pytest.raises(BackendNotSupportedError) as info:
        NcclBackend().init_process_group(world_size=1, rank=0)
    assert "found no CUDA device" in info.value.message


@pytest.mark.parametrize(
    ("patch", "expect"),
    [
        (
            {"hip": "6.2.41133"},
            "is a ROCm build (HIP 6.2.41133): its 'nccl' process group is RCCL; use the rccl backend",
        ),
        ({"cuda": None}, "is not a CUDA build (torch.version.cuda is None)"),
        ({"nccl": False}, "was built without NCCL"),
        ({"count": 0}, "found no CUDA device"),
        ({"count": 2}, "2 CUDA device(s)"),
    ],
)
def test_probe_reasons(monkeypatch, patch: dict, expect: str) -> None:
    """The probe's branches with torch's answers replaced (no tensor is faked)."""
    monkeypatch.setattr(torch.version, "hip", patch.get("hip"), raising=False)
    monkeypatch.setattr(torch.version, "cuda", patch.get("cuda", "13.0"))
    monkeypatch.setattr(dist, "is_nccl_available", lambda: patch.get("nccl", True))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: patch.get("count", 1))
    ok, reason = probes.nccl_available()
    assert expect in reason
    assert ok is (patch.get("count") == 2)


def test_capabilities_are_what_nccl_does() -> None:
    caps = NcclBackend.capabilities.describe()
    assert caps["devices"] == ["cuda"]
    assert set(caps["reduce_ops"]) == {"sum", "prod", "min", "max", "avg"}, "NCCL has no bitwise reductions"
    assert caps["p2p_tags"] is False, "NCCL ignores tags: the core must refuse them, not drop them"
    assert caps["concurrent_progress"] and caps["async_ops"]
    assert not NcclBackend.capabilities.supports_reduce(
        next(op for op in NcclBackend.capabilities.reduce_support if op.value == "sum"), torch.bool
    )


def _routing(monkeypatch, capturing: bool, path: str, direct: object = None) -> NcclBackend:
    backend = NcclBackend()
    backend._path = path
    backend._direct = direct
    backend._direct_reason = "LibraryNotFound: no usable libnccl.so found"
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: capturing)
    return backend


def test_eager_ops_take_the_process_group(monkeypatch) -> None:
    backend = _routing(monkeypatch, capturing=False, path="auto")
    assert backend._direct_for(SimpleNamespace(group_id="world"), "all_reduce") is None


def test_capture_without_a_direct_path_is_refused_with_why(monkeypatch) -> None:
    backend = _routing(monkeypatch, capturing=True, path="auto")
    with pytest.raises(
        BackendNotSupportedError,
        match=r"inside CUDA graph capture needs the direct NCCL communicator "
        r"of group world.*no usable libnccl",
    ):
        backend._direct_for(SimpleNamespace(group_id="world"), "all_reduce")
    backend = _routing(monkeypatch, capturing=True, path="process_group")
    with pytest.raises(BackendNotSupportedError, match="path='process_group'"):
        backend._direct_for(SimpleNamespace(group_id="world"), "all_reduce")


def test_capture_and_direct_path_route_to_the_groups_communicator(monkeypatch) -> None:
    comm = object()
    direct = SimpleNamespace(get=lambda gid: comm if gid == "tp" else None)
    assert _routing(monkeypatch, True, "auto", direct)._direct_for(SimpleNamespace(group_id="tp"), "x") is comm
    assert _routing(monkeypatch, False, "direct", direct)._direct_for(SimpleNamespace(group_id="tp"), "x") is comm


def test_topology_reports_the_library() -> None:
    facts = Topology.discover().facts["nccl"]
    if getattr(torch.version, "cuda", None):
        assert facts["version"] == ".".join(map(str, torch.cuda.nccl.version())), facts
        assert facts["library"].endswith(".so.2")
    else:
        assert facts["library"] is None and facts["reason"]


INFO_AND_MODULES = """
import json, sys
from sagellm_comm.cli.info import collect_info
data = collect_info()
print(json.dumps({"backends": data["backends"], "modules": sorted(m for m in sys.modules if "nccl" in m)}))
"""


def test_info_shows_the_backend_and_why_without_importing_the_engine() -> None:
    proc = subprocess.run([sys.executable, "-c", INFO_AND_MODULES], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    backends = {b["name"]: b for b in data["backends"]}
    ok, reason = probes.nccl_available()
    assert backends["nccl"]["available"] is ok and backends["nccl"]["reason"] == reason
    loaded = data["modules"]
    assert "sagellm_comm_nccl.backend" not in loaded and "sagellm_comm_nccl.binding" not in loaded, loaded
