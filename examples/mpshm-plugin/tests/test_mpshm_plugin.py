"""The mpshm plugin registers its backend (with the plugin API it declares), the core refuses what it does not
declare, and its shared-memory segments live exactly as long as the backend: unlinked at destroy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from sagellm_comm import BackendNotSupportedError, get_comm_backend, list_comm_backends
from sagellm_comm.errors import ErrorCode
from sagellm_comm.registry import plugin_manager

SHM = Path("/dev/shm")


def segments() -> set[str]:
    return {p.name for p in SHM.iterdir() if p.name.startswith("sgmpshm-")} if SHM.is_dir() else set()


def test_plugin_registers_backend() -> None:
    statuses = {s.name: s for s in list_comm_backends()}
    assert "mpshm" in statuses, f"backend mpshm is not registered; known: {sorted(statuses)}"
    status = statuses["mpshm"]
    assert status.available, status.reason
    assert status.plugin == "mpshm"
    record = plugin_manager().records["mpshm"]
    assert (record.status, record.api, record.distribution) == ("loaded", "2.0", "isagellm-comm-mpshm")


def test_undeclared_op_is_refused() -> None:
    comm = get_comm_backend("mpshm")
    comm.init_process_group(world_size=1, rank=0)
    try:
        with pytest.raises(BackendNotSupportedError) as info:
            comm.reduce_scatter(torch.ones(1), torch.ones(1))
        assert info.value.code == ErrorCode.COMM_BACKEND_NOT_SUPPORTED
    finally:
        comm.destroy()


@pytest.mark.skipif(not SHM.is_dir(), reason="no /dev/shm to look at")
def test_segments_grow_and_are_unlinked_at_destroy() -> None:
    before = segments()
    comm = get_comm_backend("mpshm")
    comm.init_process_group(world_size=1, rank=0)
    try:
        mine = segments() - before
        assert len(mine) == 1, mine  # generation 1, made at init
        big = torch.arange(100_000, dtype=torch.float64)  # 800 kB > the first 64 KiB buffers: generation 2
        comm.all_reduce(big, op="max")
        assert torch.equal(big, torch.arange(100_000, dtype=torch.float64))
        grown = segments() - before
        assert len(grown) == 1 and grown != mine, (mine, grown)  # the old generation is unlinked
        assert os.path.getsize(SHM / next(iter(grown))) >= 2 * big.numel() * big.element_size()
    finally:
        comm.destroy()
    assert segments() == before
