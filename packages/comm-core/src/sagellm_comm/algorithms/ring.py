"""``ring``: the bandwidth-optimal ring over point-to-point sends (Patarasuk & Yuan; what NCCL and Gloo use for
large messages).

The buffer is cut into ``p`` chunks. Reduce-scatter: in ``p-1`` steps every rank sends one chunk to its right
neighbour and adds the chunk it receives from its left one, after which rank ``r`` holds the reduced chunk ``r``.
All-gather: in ``p-1`` more steps the finished chunks travel around the ring. all_reduce is the two in a row.
"""

from __future__ import annotations

from typing import Any

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.algorithms.base import Algorithm
from sagellm_comm.algorithms.p2p import (
    combine_,
    copy_back,
    exchange,
    finish_reduce_,
    flat_view,
    reduce_op_for,
    world_of,
)
from sagellm_comm.group import CommGroup

__all__ = ["ALGORITHM"]


def reduce_scatter_phase(comm: Any, g: CommGroup, chunks: list[torch.Tensor], op: ReduceOp) -> None:
    """``p-1`` steps; afterwards ``chunks[rank]`` holds the reduction of every rank's chunk ``rank``."""
    n, r = g.world_size, g.rank
    right, left = (r + 1) % n, (r - 1) % n
    scratch = torch.empty(max(c.numel() for c in chunks), dtype=chunks[0].dtype, device=chunks[0].device)
    for s in range(n - 1):
        incoming = chunks[(r - s - 2) % n]
        tmp = scratch[: incoming.numel()]
        exchange(comm, g, chunks[(r - s - 1) % n], right, tmp, left, send_first=r == 0)
        combine_(incoming, tmp, op)


def all_gather_phase(comm: Any, g: CommGroup, chunks: list[torch.Tensor]) -> None:
    """``p-1`` steps; rank ``r`` starts with ``chunks[r]`` final and ends with every chunk final."""
    n, r = g.world_size, g.rank
    right, left = (r + 1) % n, (r - 1) % n
    for s in range(n - 1):
        exchange(comm, g, chunks[(r - s) % n], right, chunks[(r - s - 1) % n], left, send_first=r == 0)


def all_reduce(comm: Any, tensor: torch.Tensor, op: Any = "sum", group: CommGroup | None = None) -> torch.Tensor:
    g = world_of(comm, group)
    rop = reduce_op_for(op, tensor)
    if g.world_size == 1 or tensor.numel() == 0:
        return tensor
    flat = flat_view(tensor)
    chunks = list(torch.tensor_split(flat, g.world_size))
    reduce_scatter_phase(comm, g, chunks, rop)
    all_gather_phase(comm, g, chunks)
    finish_reduce_(flat, rop, g.world_size)
    copy_back(tensor, flat)
    return tensor


def all_gather(comm: Any, output: torch.Tensor, tensor: torch.Tensor, group: CommGroup | None = None) -> torch.Tensor:
    g = world_of(comm, group)
    flat = flat_view(output)
    chunks = list(torch.tensor_split(flat, g.world_size))
    chunks[g.rank].copy_(tensor.reshape(-1))
    all_gather_phase(comm, g, chunks)
    copy_back(output, flat)
    return output


def reduce_scatter(
    comm: Any, output: torch.Tensor, input: torch.Tensor, op: Any = "sum", group: CommGroup | None = None
) -> torch.Tensor:
    g = world_of(comm, group)
    rop = reduce_op_for(op, output)
    work = input.reshape(-1).clone()  # the input stays as the caller passed it
    chunks = list(torch.tensor_split(work, g.world_size))
    reduce_scatter_phase(comm, g, chunks, rop)
    output.copy_(chunks[g.rank].view(output.shape))
    return finish_reduce_(output, rop, g.world_size)


ALGORITHM = Algorithm(
    name="ring",
    description="ring over send/recv: reduce-scatter then all-gather, p-1 steps each",
    impls={"all_reduce": all_reduce, "all_gather": all_gather, "reduce_scatter": reduce_scatter},
    cost={
        "all_reduce": "2(p-1)a + 2((p-1)/p) n b + ((p-1)/p) n g",
        "all_gather": "(p-1)a + ((p-1)/p) n b",
        "reduce_scatter": "(p-1)a + ((p-1)/p) n b + ((p-1)/p) n g",
    },
)
