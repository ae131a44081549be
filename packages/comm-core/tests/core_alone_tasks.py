"""Helpers for test_core_alone: a world-of-one backend defined outside any plugin, and a rank function."""

from __future__ import annotations

import os

import torch

from sagellm_comm import Capabilities, CommBackend
from sagellm_comm.capabilities import FLOAT_DTYPES


class LoopbackBackend(CommBackend):
    """World size 1 only: all_reduce leaves the tensor as it is. Declares nothing else."""

    name = "loopback"
    capabilities = Capabilities(
        ops=frozenset({"all_reduce"}),
        dtypes=FLOAT_DTYPES,
        devices=frozenset({"cpu"}),
        reduce_support=Capabilities.reduce_table(FLOAT_DTYPES, ()),
    )

    def _init(self, rendezvous, options):
        if rendezvous.world_size != 1:
            raise ValueError("loopback is a world of one")
        return "loopback-world"

    def _destroy(self) -> None:
        pass

    def _all_reduce(self, tensor: torch.Tensor, op, group, async_op):
        return None


def rank_and_env() -> tuple[int, str]:
    import sagellm_comm

    assert not [s for s in sagellm_comm.list_comm_backends() if s.available]
    return int(os.environ["RANK"]), os.environ["WORLD_SIZE"]
