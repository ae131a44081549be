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
from sagellm_comm.algorithms.p2p import combine_, exchange, finish_reduce_, recv_from, reduce_op_for, send_to, world_of
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
    pof2 = 1 << (n.bit_length() - 1)
    rem = n - pof2
    # pre-step: fold the first 2*rem ranks pairwise so 2^m ranks remain
    if r < 2 * rem:
        if r % 2 == 0:
            send_to(comm, acc, r + 1, g)
            newrank = -1
        else:
            recv_from(comm, tmp, r - 1, g)
            combine_(acc, tmp, rop)
            newrank = r // 2
    else:
        newrank = r - rem
    if newrank >= 0:
        mask = 1
        while mask < pof2:
            partner_new = newrank ^ mask
            partner = partner_new * 2 + 1 if partner_new < rem else partner_new + rem
            exchange(comm, g, acc, partner, tmp, partner, send_first=r < partner)
            combine_(acc, tmp, rop)
            mask <<= 1
    # post-step: hand the result back to the ranks that sat out
    if r < 2 * rem:
        if r % 2:
            send_to(comm, acc, r - 1, g)
        else:
            recv_from(comm, acc, r + 1, g)
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
