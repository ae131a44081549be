"""``tree``: binomial trees over point-to-point sends (MPICH's broadcast and reduce for short messages).

Ranks are numbered relative to the root (``v = (rank - root) mod p``). Broadcast: in round ``k`` every rank that
already has the data sends it ``2^k`` further, so ``ceil(lg p)`` rounds reach everyone. Reduce mirrors it:
rank ``v`` receives from ``v + 2^k`` while bit ``k`` of ``v`` is clear, then sends its partial result to
``v - 2^k`` and is done. all_reduce is a reduce to rank 0 followed by a broadcast from it.
"""

from __future__ import annotations

from typing import Any

import torch

from sagellm_comm.algorithms.base import Algorithm
from sagellm_comm.algorithms.p2p import combine_, finish_reduce_, recv_from, reduce_op_for, send_to, world_of
from sagellm_comm.errors import RankMismatchError
from sagellm_comm.group import CommGroup

__all__ = ["ALGORITHM"]


def check_root(root: int, g: CommGroup, what: str) -> None:
    if isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < g.world_size:
        raise RankMismatchError(
            f"{what}={root!r} is out of range for a group of {g.world_size} (valid 0..{g.world_size - 1})"
        )


def broadcast(comm: Any, tensor: torch.Tensor, root: int = 0, group: CommGroup | None = None) -> torch.Tensor:
    g = world_of(comm, group)
    check_root(root, g, "broadcast src_rank")
    n = g.world_size
    v = (g.rank - root) % n
    buf = tensor if tensor.is_contiguous() else tensor.contiguous()
    mask = 1
    while mask < n:  # receive once, from the rank that differs in the lowest set bit
        if v & mask:
            recv_from(comm, buf, (v - mask + root) % n, g)
            break
        mask <<= 1
    mask >>= 1
    while mask > 0:  # then pass it on to the ranks below that bit
        if v + mask < n:
            send_to(comm, buf, (v + mask + root) % n, g)
        mask >>= 1
    if buf is not tensor:
        tensor.copy_(buf)
    return tensor


def reduce(
    comm: Any, tensor: torch.Tensor, root: int = 0, op: Any = "sum", group: CommGroup | None = None
) -> torch.Tensor:
    g = world_of(comm, group)
    check_root(root, g, "reduce dst_rank")
    rop = reduce_op_for(op, tensor)
    n = g.world_size
    v = (g.rank - root) % n
    acc = tensor if tensor.is_contiguous() else tensor.contiguous()
    tmp = torch.empty_like(acc)
    mask = 1
    while mask < n:
        if v & mask:
            send_to(comm, acc, ((v & ~mask) + root) % n, g)
            break
        if v | mask < n:
            recv_from(comm, tmp, ((v | mask) + root) % n, g)
            combine_(acc, tmp, rop)
        mask <<= 1
    if v == 0:
        finish_reduce_(acc, rop, n)
    if acc is not tensor:
        tensor.copy_(acc)
    return tensor


def all_reduce(comm: Any, tensor: torch.Tensor, op: Any = "sum", group: CommGroup | None = None) -> torch.Tensor:
    reduce(comm, tensor, 0, op, group)
    return broadcast(comm, tensor, 0, group)


ALGORITHM = Algorithm(
    name="tree",
    description="binomial tree over send/recv: reduce to the root, broadcast from it",
    impls={"all_reduce": all_reduce, "broadcast": broadcast, "reduce": reduce},
    cost={
        "broadcast": "lg p (a + n b)",
        "reduce": "lg p (a + n b + n g)",
        "all_reduce": "2 lg p (a + n b) + lg p n g",
    },
)
