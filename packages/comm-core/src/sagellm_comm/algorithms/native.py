"""``native``: the backend's own collective for every op (``sendrecv``: its own point-to-point)."""

from __future__ import annotations

from typing import Any

import torch

from sagellm_comm.algorithms.base import Algorithm
from sagellm_comm.algorithms.p2p import exchange, world_of
from sagellm_comm.group import CommGroup

__all__ = ["ALGORITHM"]


def all_reduce(comm: Any, tensor: torch.Tensor, op: Any = "sum", group: CommGroup | None = None) -> torch.Tensor:
    return comm.all_reduce(tensor, op=op, group=group)


def all_gather(comm: Any, output: torch.Tensor, tensor: torch.Tensor, group: CommGroup | None = None) -> torch.Tensor:
    if "all_gather_into_tensor" in comm.capabilities.ops:
        return comm.all_gather_into_tensor(output, tensor, group=group)
    n = world_of(comm, group).world_size
    comm.all_gather(tensor, group=group, output=list(output.reshape(n, *tensor.shape).unbind(0)))
    return output


def reduce_scatter(
    comm: Any, output: torch.Tensor, input: torch.Tensor, op: Any = "sum", group: CommGroup | None = None
) -> torch.Tensor:
    return comm.reduce_scatter(output, input, op=op, group=group)


def broadcast(comm: Any, tensor: torch.Tensor, root: int = 0, group: CommGroup | None = None) -> torch.Tensor:
    return comm.broadcast(tensor, root, group=group)


def reduce(
    comm: Any, tensor: torch.Tensor, root: int = 0, op: Any = "sum", group: CommGroup | None = None
) -> torch.Tensor:
    return comm.reduce(tensor, root, op=op, group=group)


def all_to_all(comm: Any, output: torch.Tensor, input: torch.Tensor, group: CommGroup | None = None) -> torch.Tensor:
    return comm.all_to_all(output, input, group=group)


def sendrecv(comm: Any, output: torch.Tensor, input: torch.Tensor, group: CommGroup | None = None) -> torch.Tensor:
    """nccl-tests' sendrecv: every rank sends to the next rank and receives from the previous one (a ring
    shift); one rank copies to itself."""
    g = world_of(comm, group)
    n, r = g.world_size, g.rank
    if n == 1:
        return output.copy_(input)
    exchange(comm, g, input, (r + 1) % n, output, (r - 1) % n, send_first=r == 0)
    return output


ALGORITHM = Algorithm(
    name="native",
    description="the backend's own collective (NCCL, Gloo, shm ... choose their own schedule)",
    impls={
        "all_reduce": all_reduce,
        "all_gather": all_gather,
        "reduce_scatter": reduce_scatter,
        "broadcast": broadcast,
        "reduce": reduce,
        "all_to_all": all_to_all,
        "sendrecv": sendrecv,
    },
    cost={
        op: "the backend's own"
        for op in ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "reduce", "all_to_all")
    }
    | {"sendrecv": "a + n b"},
    needs=None,
)
