"""The rdma plugin registers its backend without importing NIXL, declares only point-to-point, and refuses
collectives with COMM_BACKEND_NOT_SUPPORTED."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from sagellm_comm import BackendNotSupportedError, get_comm_backend, list_comm_backends
from sagellm_comm.errors import ErrorCode


def test_plugin_registers_backend() -> None:
    statuses = {s.name: s for s in list_comm_backends()}
    assert "rdma" in statuses, f"backend rdma is not registered; known: {sorted(statuses)}"
    status = statuses["rdma"]
    assert status.available, status.reason
    assert status.plugin == "rdma"
    assert "nixl" in status.reason


def test_listing_backends_does_not_import_nixl() -> None:
    code = (
        "import sys; from sagellm_comm import list_comm_backends; list_comm_backends(); "
        "print(sorted(m for m in sys.modules if m.startswith(('nixl', 'torch'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "nixl" not in out.stdout, out.stdout


def test_collectives_are_refused_and_p2p_needs_a_peer() -> None:
    comm = get_comm_backend("rdma")
    comm.init_process_group(world_size=1, rank=0)
    try:
        for call in (
            lambda: comm.all_reduce(torch.ones(4)),
            lambda: comm.barrier(),
            lambda: comm.broadcast(torch.ones(2), 0),
        ):
            with pytest.raises(BackendNotSupportedError) as info:
                call()
            assert info.value.code == ErrorCode.COMM_BACKEND_NOT_SUPPORTED
        assert comm.transfer_engine.registrations == 0
    finally:
        comm.destroy()
