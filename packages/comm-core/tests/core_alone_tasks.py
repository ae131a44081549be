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


class MarkedLoopback(LoopbackBackend):
    """A loopback whose destroy leaves a file named after the instance in $MARK_DIR."""

    def _destroy(self) -> None:
        with open(os.path.join(os.environ["MARK_DIR"], f"destroyed-{id(self)}"), "w"):
            pass


def two_live_loopbacks(mark_dir: str) -> list[str]:
    """Leave two initialized instances of one backend name in this rank (as the conformance suite's cached backend
    and a test's own do), for the rank's shutdown to destroy."""
    from sagellm_comm.backend import live_backends

    os.environ["MARK_DIR"] = mark_dir
    first, second = MarkedLoopback(), MarkedLoopback()
    first.init_process_group(world_size=1, rank=0)
    second.init_process_group(world_size=1, rank=0)
    return [f"destroyed-{id(b)}" for b in live_backends() if b in (first, second)]
