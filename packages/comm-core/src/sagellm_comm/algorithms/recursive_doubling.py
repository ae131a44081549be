"""``recursive_doubling``: latency-optimal all_reduce (MPICH's choice up to 2 KiB).

With ``p`` a power of two, in round ``k`` every rank swaps its whole buffer with the rank that differs in bit
``k`` and reduces: ``lg p`` rounds. Otherwise (MPICH's pre/post step) the first ``2r`` ranks, ``r = p - 2^m``,
pair up: even ones hand their data to the odd neighbour and sit out, the remaining ``2^m`` ranks run the
doubling, and the odd ranks hand the result back.
"""

from __future__ import annotations

from typing import Any

import torch

from sagellm_comm.algorithms.base import Algorithm
from sagellm_comm.algorithms.p2p import (
    combine_,
    exchange,
    finish_reduce_,
    fold_in,
    fold_out,
    folded_rank,
    reduce_op_for,
    world_of,
)
from sagellm_comm.group import CommGroup

__all__ = ["ALGORITHM"]


def all_reduce(comm: Any, tensor: torch.Tensor, op: Any = "sum", group: CommGroup | None = None) -> torch.Tensor:
    g = world_of(comm, group)
    rop = reduce_op_for(op, tensor)
    n, r = g.world_size, g.rank
    if n == 1 or tensor.numel() == 0:
        return tensor
    acc = tensor if tensor.is_contiguous() else tensor.contiguous()
    tmp = torch.empty_like(acc)
    newrank, pof2, rem = fold_in(comm, g, acc, tmp, rop)
    if newrank >= 0:
        mask = 1
        while mask < pof2:
            partner = folded_rank(newrank ^ mask, rem)
            exchange(comm, g, acc, partner, tmp, partner, send_first=r < partner)
            combine_(acc, tmp, rop)
            mask <<= 1
    fold_out(comm, g, acc, rem)
    finish_reduce_(acc, rop, n)
    if acc is not tensor:
        tensor.copy_(acc)
    return tensor


ALGORITHM = Algorithm(
    name="recursive_doubling",
    description="recursive doubling over send/recv: lg p whole-buffer exchanges (+1 pre/post step if p is not "
                "a power of two)",
    impls={"all_reduce": all_reduce},
    cost={"all_reduce": "lg p (a + n b + n g)  (non-power-of-two p: + 2(a + n b))"},
)
