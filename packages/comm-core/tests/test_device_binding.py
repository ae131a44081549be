"""How an accelerator engine on torch.distributed binds a rank to its device (``TorchDistributedBackend._device_id``),
with torch's device module replaced: this host has no accelerator, and no tensor is made on one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sagellm_comm.engines import torch_distributed as td
from sagellm_comm.errors import BackendNotSupportedError, InvalidArgumentError
from sagellm_comm.rendezvous import Rendezvous


class Accel(td.TorchDistributedBackend):
    name = "accel-test"
    torch_backend = "nccl"
    device_type = "cuda"


@pytest.fixture
def devices(monkeypatch):
    """A stand-in for ``torch.get_device_module('cuda')`` with N devices that records set_device."""
    calls: list[int] = []

    def install(count: int) -> list[int]:
        module = SimpleNamespace(device_count=lambda: count, set_device=calls.append)
        monkeypatch.setattr(torch, "get_device_module", lambda kind: module)
        return calls

    return install


def _rdzv(rank: int, local_rank: int) -> Rendezvous:
    return Rendezvous(
        rank=rank, world_size=8, local_rank=local_rank, master_addr="127.0.0.1", master_port=1, timeout_s=5.0
    )


def test_cpu_engines_bind_nothing() -> None:
    assert td.TorchDistributedBackend._device_id(SimpleNamespace(device_type="cpu"), _rdzv(0, 0), {}) is None


def test_the_local_rank_picks_the_device(devices) -> None:
    calls = devices(4)
    backend = Accel()
    assert backend.device == torch.device("cuda"), "before init: the bare device type (the suite reads it)"
    assert backend._device_id(_rdzv(rank=6, local_rank=2), {}) == torch.device("cuda", 2)
    assert calls == [2] and backend.device == torch.device("cuda", 2)


@pytest.mark.parametrize(("option", "index"), [(3, 3), ("cuda:1", 1), (torch.device("cuda", 0), 0), ("cuda", 2)])
def test_the_device_option_wins(devices, option, index) -> None:
    devices(4)
    assert Accel()._device_id(_rdzv(rank=2, local_rank=2), {"device": option}) == torch.device("cuda", index)


def test_a_local_rank_past_the_device_count_is_an_error_not_a_wraparound(devices) -> None:
    devices(2)
    with pytest.raises(InvalidArgumentError, match=r"needs cuda:3, but this host shows 2 cuda device\(s\)"):
        Accel()._device_id(_rdzv(rank=3, local_rank=3), {})


def test_no_device_at_all(devices) -> None:
    devices(0)
    with pytest.raises(BackendNotSupportedError, match="found no cuda device"):
        Accel()._device_id(_rdzv(0, 0), {})


@pytest.mark.parametrize("option", ["cpu", True, "meta:0"])
def test_a_device_of_another_kind_is_refused(devices, option) -> None:
    devices(2)
    with pytest.raises(InvalidArgumentError):
        Accel()._device_id(_rdzv(0, 0), {"device": option})
