"""``recursive_doubling``: latency-optimal all_reduce (MPICH's choice up to 2 KiB).

With ``p`` a power of two, in round ``k`` every rank swaps its whole buffer with the rank that differs in bit
``k`` and reduces: ``lg p`` rounds. Otherwise (MPICH's pre/post step) the first ``2r`` ranks, ``r = p - 2^m``,
pair up: even ones hand their data to the odd neighbour and sit out, the remaining ``2^m`` ranks run the
doubling, and the odd ranks hand the result back.
"""

from __future__ import annotations

from typing import Any

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.algorithms.base import Algorithm
from sagellm_comm.algorithms.p2p import combine_, exchange, folded_all_reduce, folded_rank
from sagellm_comm.group import CommGroup

__all__ = ["ALGORITHM"]


def _doubling(
    comm: Any, g: CommGroup, acc: torch.Tensor, tmp: torch.Tensor, rop: ReduceOp, position: int, pof2: int, rem: int
) -> None:
    mask = 1
    while mask < pof2:
        partner = folded_rank(position ^ mask, rem)
        exchange(comm, g, acc, partner, tmp, partner, send_first=g.rank < partner)
        combine_(acc, tmp, rop)
        mask <<= 1


def all_reduce(comm: Any, tensor: torch.Tensor, op: Any = "sum", group: CommGroup | None = None) -> torch.Tensor:
    return folded_all_reduce(comm, tensor, op, group, _doubling)


ALGORITHM = Algorithm(
    name="recursive_doubling",
    description="recursive doubling over send/recv: lg p whole-buffer exchanges (+1 pre/post step if p is not "
    "a power of two)",
    impls={"all_reduce": all_reduce},
    cost={"all_reduce": "lg p (a + n b + n g)  (non-power-of-two p: + 2(a + n b))"},
)
