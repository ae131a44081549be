"""The accelerator plugins together (nccl, rccl, hccl): what ``auto`` picks per device with the probes replaced,
the extras that install them without touching torch, and the tox wiring of the plugin that builds on another."""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sagellm_comm import get_comm_backend
from sagellm_comm.hints import hint_for_backend, hint_for_device
from sagellm_comm.registry import backend_registry, reload_plugins, select_backend_name

ROOT = Path(__file__).resolve().parent.parent
ACCELERATORS = ("nccl", "rccl", "hccl")


def _project(folder: str) -> dict:
    return tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]


@pytest.fixture
def probes_replaced():
    """Set each accelerator backend's availability by name (the real probes answer for this host's hardware)."""
    reload_plugins()

    def set_available(**available: bool) -> None:
        registry = backend_registry()
        for name, ok in available.items():
            registry.register(replace(registry.get(name), available=lambda ok=ok: (ok, "replaced by the test")))

    yield set_available
    reload_plugins()


def test_auto_picks_nccl_for_cuda_hccl_for_npu_and_cpu_otherwise(probes_replaced) -> None:
    probes_replaced(nccl=True, rccl=False, hccl=True)
    assert select_backend_name("cuda:0") == "nccl"
    assert select_backend_name("npu:1") == "hccl"  # torch.device("npu") exists only once torch_npu is imported
    cpu = select_backend_name()
    assert cpu not in ACCELERATORS and select_backend_name(torch.empty(2)) == cpu
    assert type(get_comm_backend("auto", device="cuda:0")).__name__ == "NcclBackend"  # created, not initialized


def test_auto_on_a_rocm_host_picks_rccl(probes_replaced) -> None:
    probes_replaced(nccl=False, rccl=True, hccl=False)
    assert select_backend_name("cuda") == "rccl"


def test_auto_without_any_accelerator_says_why_per_backend(probes_replaced) -> None:
    probes_replaced(nccl=False, rccl=False, hccl=False)
    with pytest.raises(Exception, match=r"no available backend for 'cuda' tensors: nccl: replaced by the test; rccl"):
        select_backend_name("cuda:0")


def _dist(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower()


def test_the_extras_exist_and_the_hints_name_them() -> None:
    extras = _project(".")["optional-dependencies"]
    for name in ACCELERATORS:
        # the extra names the plugin alone (at the release series' pin, which tests/test_layers.py checks)
        assert [_dist(d) for d in extras[name]] == [f"isagellm-comm-{name}"]
        assert f"isagellm-comm-{name}" in {_dist(d) for d in extras["all"]}
        assert hint_for_backend(name) == f"install it with: pip install 'isagellm-comm[{name}]'"
    assert hint_for_device("cuda").endswith("pip install 'isagellm-comm[nccl]'")


@pytest.mark.parametrize("name", ACCELERATORS)
def test_no_extra_pulls_a_second_torch(name: str) -> None:
    """Each plugin accepts the torch already installed (a lower bound only) and brings no vendor runtime of its own
    (torch-npu pins an exact torch; nvidia-* and ROCm libraries come with the user's torch build)."""
    for dep in _project(f"packages/comm-{name}")["dependencies"]:
        dist = re.match(r"[A-Za-z0-9._-]+", dep).group(0).lower()
        assert not dist.startswith(("torch-npu", "torch_npu", "nvidia-", "pytorch-triton")), dep
        if dist == "torch":
            assert re.fullmatch(r"torch>=[\d.]+", dep.replace(" ", "")), f"{name}: {dep} must be a lower bound only"


def test_tox_installs_the_workspace_plugins_a_package_builds_on() -> None:
    tox = (ROOT / "tox.ini").read_text()
    for folder in sorted((ROOT / "packages").glob("comm-*")):
        name = folder.name.removeprefix("comm-")
        for dep in _project(f"packages/{folder.name}")["dependencies"]:
            dist = re.match(r"[A-Za-z0-9._-]+", dep).group(0).lower()
            sub = dist.removeprefix("isagellm-comm-")
            if dist.startswith("isagellm-comm-") and sub != "core":
                assert f"{name}: ./packages/comm-{sub}" in tox, f"tox env {name} must install {dist} from the workspace"
