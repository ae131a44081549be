"""The rccl plugin without AMD hardware: registration, the ROCm probe's reasons, refusal at creation, librccl
discovery and the amdsmi topology facts (failing soft)."""

from __future__ import annotations

import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist

from sagellm_comm import BackendNotSupportedError, get_comm_backend, list_comm_backends
from sagellm_comm.errors import ErrorCode
from sagellm_comm.registry import backend_registry, reload_plugins, select_backend_name
from sagellm_comm.topology import Topology
from sagellm_comm_nccl.backend import NcclBackend
from sagellm_comm_nccl.binding import LibraryNotFound, find_library, library_candidates
from sagellm_comm_rccl import amd, probes
from sagellm_comm_rccl.backend import RcclBackend

ROCM = getattr(torch.version, "hip", None) is not None
not_rocm = pytest.mark.skipif(ROCM, reason="this torch is a ROCm build: the not-ROCm reasons do not apply")


def test_registered_for_rocm_gpus_which_torch_names_cuda() -> None:
    status = {s.name: s for s in list_comm_backends()}["rccl"]
    assert status.devices == ("cuda",) and status.plugin == "rccl"


@not_rocm
def test_unavailable_here_with_the_reason() -> None:
    status = {s.name: s for s in list_comm_backends()}["rccl"]
    assert not status.available
    assert status.reason.startswith(
        f"torch {torch.__version__} is not a ROCm build of torch (torch.version.hip is None"
    )


@not_rocm
def test_creation_is_refused_with_the_reason() -> None:
    for make in (lambda: get_comm_backend("rccl"), lambda: RcclBackend().init_process_group(world_size=1, rank=0)):
        with pytest.raises(BackendNotSupportedError) as info:
            make()
        assert info.value.code is ErrorCode.COMM_BACKEND_NOT_SUPPORTED
        assert "not a ROCm build of torch" in info.value.message


@pytest.mark.parametrize(
    ("count", "nccl", "expect"),
    [
        (0, True, "(HIP 6.2.41133) found no ROCm device"),
        (1, False, "was built without RCCL"),
        (8, True, "with RCCL, 8 ROCm device(s)"),
    ],
)
def test_probe_reasons_on_a_rocm_build(monkeypatch, count: int, nccl: bool, expect: str) -> None:
    """The probe's branches with torch's answers replaced (no tensor is faked)."""
    monkeypatch.setattr(torch.version, "hip", "6.2.41133", raising=False)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: nccl)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    ok, reason = probes.rccl_available()
    assert expect in reason and ok is (count == 8)


def test_it_is_the_nccl_backend_on_librccl() -> None:
    assert issubclass(RcclBackend, NcclBackend)
    assert RcclBackend.torch_backend == "nccl", "torch's ROCm build runs RCCL under the name 'nccl'"
    assert RcclBackend.library_flavor == "rccl" and RcclBackend.capabilities == NcclBackend.capabilities


def test_auto_picks_whichever_gpu_backend_is_available(monkeypatch) -> None:
    """On a ROCm build nccl is unavailable and rccl available (and the reverse on CUDA): auto follows the probes,
    replaced here."""
    reload_plugins()
    try:
        registry = backend_registry()
        for name, ok in (("nccl", False), ("rccl", True)):
            spec = registry.get(name)
            registry.register(replace(spec, available=lambda ok=ok: (ok, "replaced")))
        assert select_backend_name("cuda:0") == "rccl"
    finally:
        reload_plugins()


def test_librccl_is_searched_where_rocm_puts_it(monkeypatch, tmp_path) -> None:
    rocm = tmp_path / "rocm"
    (rocm / "lib").mkdir(parents=True)
    (rocm / "lib" / "librccl.so.1").write_bytes(b"not a library")
    monkeypatch.setenv("ROCM_PATH", str(rocm))
    paths = [c.path for c in library_candidates("rccl")]
    assert str(rocm / "lib" / "librccl.so.1") in paths
    assert paths[-2:] == ["librccl.so.1", "librccl.so"], "the system loader comes last"
    with pytest.raises(LibraryNotFound) as info:
        find_library("rccl")
    assert "ROCm build of torch" in str(info.value) and "SAGELLM_COMM_RCCL_LIBRARY" in str(info.value)


def test_topology_facts_fail_soft_without_rocm() -> None:
    facts = Topology.discover().facts["rccl"]
    if not ROCM:
        assert facts["library"] is None and "librccl" in facts["reason"]
    assert isinstance(facts["gpus"], list) and facts["gpus_reason"]


def test_amdsmi_listing(monkeypatch) -> None:
    """Plumbing of the amdsmi reader with a stand-in module answering as amdsmi does (no AMD GPU here)."""
    fake = SimpleNamespace(
        amdsmi_init=lambda: None,
        amdsmi_shut_down=lambda: None,
        amdsmi_get_processor_handles=lambda: ["h0", "h1"],
        amdsmi_get_gpu_device_bdf=lambda h: {"h0": "0000:c1:00.0", "h1": "0000:c2:00.0"}[h],
        amdsmi_get_gpu_asic_info=lambda h: {"market_name": "AMD Instinct MI300X", "device_id": "0x74a1"},
        amdsmi_get_gpu_vram_info=lambda h: (_ for _ in ()).throw(RuntimeError("AMDSMI_STATUS_NOT_SUPPORTED")),
    )
    monkeypatch.setitem(sys.modules, "amdsmi", fake)
    got = amd.amd_gpus()
    assert got["gpus_reason"] == "ok" and [g["bdf"] for g in got["gpus"]] == ["0000:c1:00.0", "0000:c2:00.0"]
    assert got["gpus"][0]["asic"]["market_name"] == "AMD Instinct MI300X"
    assert got["gpus"][1]["vram"].startswith("unavailable: AMDSMI_STATUS_NOT_SUPPORTED")
