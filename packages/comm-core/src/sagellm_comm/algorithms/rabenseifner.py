"""``rabenseifner``: all_reduce as a reduce-scatter by recursive halving followed by an all-gather by recursive
doubling (Rabenseifner 2004; MPICH's choice for large messages when p is a power of two). It moves the ring's
2((p-1)/p) n bytes per rank in only 2 lg p messages.

With ``p`` a power of two, the buffer is cut into ``p`` chunks. Reduce-scatter: in round ``k`` (distance ``p/2``,
``p/4``, ...) each rank keeps one half of its current range, sends the other half to the partner at that distance
and adds the partner's copy of the half it keeps; after ``lg p`` rounds rank ``r`` holds the reduced chunk ``r``.
All-gather runs the rounds backwards, doubling the range each time. Otherwise (MPICH's pre/post step, as in
``recursive_doubling``) the first ``2r`` ranks, ``r = p - 2^m``, pair up: even ones hand their data to the odd
neighbour and sit out, the remaining ``2^m`` ranks run the algorithm, the odd ranks hand the result back.

Every chunk's final value is computed by one rank and then copied to the others, so every rank ends with the same
bits.
"""

from __future__ import annotations

from typing import Any

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.algorithms.base import Algorithm
from sagellm_comm.algorithms.p2p import combine_, exchange, folded_all_reduce, folded_rank
from sagellm_comm.group import CommGroup

__all__ = ["ALGORITHM"]


def _halving_doubling(
    comm: Any, g: CommGroup, acc: torch.Tensor, scratch: torch.Tensor, rop: ReduceOp, position: int, pof2: int, rem: int
) -> None:
    chunks = list(torch.tensor_split(acc, pof2))
    lo, hi = 0, pof2  # the chunk range [lo, hi) this rank is responsible for
    # reduce-scatter by recursive halving: distance pof2/2, pof2/4, ..., 1
    steps = []
    half = pof2 // 2
    while half >= 1:
        partner_new = position ^ half
        partner = folded_rank(partner_new, rem)
        mid = lo + (hi - lo) // 2
        keep, give = ((lo, mid), (mid, hi)) if position < partner_new else ((mid, hi), (lo, mid))
        send = acc[_start(chunks, give[0]) : _start(chunks, give[1])]
        kept = acc[_start(chunks, keep[0]) : _start(chunks, keep[1])]
        tmp = scratch[: kept.numel()]
        exchange(comm, g, send, partner, tmp, partner, send_first=g.rank < partner)
        combine_(kept, tmp, rop)
        steps.append((partner, keep, give))
        lo, hi = keep
        half //= 2
    # all-gather by recursive doubling: the same partners in reverse; send what is final, receive the rest
    for partner, keep, give in reversed(steps):
        send = acc[_start(chunks, keep[0]) : _start(chunks, keep[1])]
        recv = acc[_start(chunks, give[0]) : _start(chunks, give[1])]
        exchange(comm, g, send, partner, recv, partner, send_first=g.rank < partner)


def all_reduce(comm: Any, tensor: torch.Tensor, op: Any = "sum", group: CommGroup | None = None) -> torch.Tensor:
    return folded_all_reduce(comm, tensor, op, group, _halving_doubling)


def _start(chunks: list[torch.Tensor], index: int) -> int:
    """Element offset of chunk ``index`` (``len(chunks)``: the end) in the flat buffer."""
    return sum(c.numel() for c in chunks[:index])


ALGORITHM = Algorithm(
    name="rabenseifner",
    description="Rabenseifner over send/recv: reduce-scatter by recursive halving, all-gather by recursive doubling "
    "(+1 pre/post step if p is not a power of two)",
    impls={"all_reduce": all_reduce},
    cost={"all_reduce": "2 lg p a + 2((p-1)/p) n b + ((p-1)/p) n g  (non-power-of-two p: + 2(a + n b))"},
)
