"""The pieces composite algorithms are built from: a simultaneous send/receive with a peer, local reduction of
a received chunk, and the group an algorithm runs on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.errors import InvalidArgumentError
from sagellm_comm.group import CommGroup
from sagellm_comm.ops import normalize_reduce_op

__all__ = [
    "combine_",
    "copy_back",
    "exchange",
    "finish_reduce_",
    "flat_view",
    "fold_in",
    "fold_out",
    "folded_all_reduce",
    "folded_rank",
    "recv_from",
    "reduce_op_for",
    "send_to",
    "world_of",
]

_COMBINE: dict[ReduceOp, Callable[..., torch.Tensor]] = {
    ReduceOp.SUM: torch.add,
    ReduceOp.AVG: torch.add,  # summed, divided once at the end (finish_reduce_)
    ReduceOp.PROD: torch.mul,
    ReduceOp.MIN: torch.minimum,
    ReduceOp.MAX: torch.maximum,
    ReduceOp.BAND: torch.bitwise_and,
    ReduceOp.BOR: torch.bitwise_or,
    ReduceOp.BXOR: torch.bitwise_xor,
}


def world_of(comm: Any, group: CommGroup | None) -> CommGroup:
    """``group``, or the backend's world group."""
    return comm.world_group if group is None else group


def reduce_op_for(op: ReduceOp | str, tensor: torch.Tensor) -> ReduceOp:
    """The protocol ReduceOp for ``op``, refused when it cannot be applied to ``tensor``'s dtype here (composite
    algorithms reduce with torch on this rank, so the backend's reduce table does not matter)."""
    rop = normalize_reduce_op(op)
    if rop is ReduceOp.AVG and not tensor.dtype.is_floating_point:
        raise InvalidArgumentError(f"avg needs a floating-point tensor, got {tensor.dtype}")
    if rop in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR) and tensor.dtype.is_floating_point:
        raise InvalidArgumentError(f"{rop.value} needs an integer or bool tensor, got {tensor.dtype}")
    return rop


def combine_(acc: torch.Tensor, other: torch.Tensor, op: ReduceOp) -> torch.Tensor:
    """``acc = acc (op) other``, in place."""
    return _COMBINE[op](acc, other, out=acc)


def finish_reduce_(tensor: torch.Tensor, op: ReduceOp, world_size: int) -> torch.Tensor:
    """AVG was summed: divide once by the number of ranks."""
    if op is ReduceOp.AVG and world_size > 1:
        tensor.div_(world_size)
    return tensor


def flat_view(tensor: torch.Tensor) -> torch.Tensor:
    """A 1-D view of ``tensor`` to work in place on (a contiguous copy if it has to be one)."""
    return tensor.view(-1) if tensor.is_contiguous() else tensor.contiguous().view(-1)


def copy_back(tensor: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """Put the result worked out in ``flat`` (from :func:`flat_view`) into ``tensor`` if it was a copy."""
    if flat.data_ptr() != tensor.data_ptr() or not tensor.is_contiguous():
        tensor.copy_(flat.view(tensor.shape))
    return tensor


def send_to(comm: Any, tensor: torch.Tensor, dst: int, group: CommGroup) -> None:
    if tensor.numel():
        comm.send(tensor, dst, group=group)


def recv_from(comm: Any, tensor: torch.Tensor, src: int, group: CommGroup) -> None:
    if tensor.numel():
        comm.recv(tensor, src, group=group)


def exchange(
    comm: Any,
    group: CommGroup,
    send: torch.Tensor | None,
    dst: int,
    recv: torch.Tensor | None,
    src: int,
    *,
    send_first: bool,
) -> None:
    """Send ``send`` to ``dst`` while receiving ``recv`` from ``src`` (empty tensors and None are skipped on both
    sides, which agree on sizes). With async ops both are posted at once; a backend without them gets blocking
    calls in the order ``send_first`` says, which the caller picks so that no cycle of ranks all wait to
    receive."""
    send = send if send is not None and send.numel() else None
    recv = recv if recv is not None and recv.numel() else None
    if comm.capabilities.async_ops:
        works = []
        if recv is not None:
            works.append(comm.irecv(recv, src, group=group))
        if send is not None:
            works.append(comm.isend(send, dst, group=group))
        for work in works:
            work.wait(group.timeout_s)
        return
    steps: list[tuple[torch.Tensor | None, Callable[[torch.Tensor], None]]] = [
        (send, lambda t: comm.send(t, dst, group=group)),
        (recv, lambda t: comm.recv(t, src, group=group)),
    ]
    for tensor, call in steps if send_first else steps[::-1]:
        if tensor is not None:
            call(tensor)


def fold_in(comm: Any, g: CommGroup, acc: torch.Tensor, scratch: torch.Tensor, op: ReduceOp) -> tuple[int, int, int]:
    """MPICH's pre-step for algorithms that need a power-of-two number of ranks: with ``rem = p - 2^m``, the first
    ``2 rem`` ranks pair up and the even one hands its data to the odd one, which reduces it. Returns
    ``(position, 2^m, rem)``: this rank's position among the ``2^m`` that go on (-1: it sits out until
    :func:`fold_out`)."""
    n, r = g.world_size, g.rank
    pof2 = 1 << (n.bit_length() - 1)
    rem = n - pof2
    if r >= 2 * rem:
        return r - rem, pof2, rem
    if r % 2 == 0:
        send_to(comm, acc, r + 1, g)
        return -1, pof2, rem
    recv_from(comm, scratch, r - 1, g)
    combine_(acc, scratch, op)
    return r // 2, pof2, rem


def folded_rank(position: int, rem: int) -> int:
    """The group rank at ``position`` among the ranks that go on after :func:`fold_in`."""
    return position * 2 + 1 if position < rem else position + rem


def fold_out(comm: Any, g: CommGroup, acc: torch.Tensor, rem: int) -> None:
    """The post-step: the odd rank of each pair hands the result back to the even one that sat out."""
    r = g.rank
    if r < 2 * rem:
        if r % 2:
            send_to(comm, acc, r - 1, g)
        else:
            recv_from(comm, acc, r + 1, g)


def folded_all_reduce(
    comm: Any, tensor: torch.Tensor, op: Any, group: CommGroup | None, body: Callable[..., None]
) -> torch.Tensor:
    """An all_reduce whose core needs a power-of-two number of ranks: the checks, the flat work buffer, MPICH's fold
    around ``body(comm, g, acc, scratch, op, position, pof2, rem)`` (run by the ranks that go on; peers are
    ``folded_rank(position ^ bit, rem)``), AVG's division and the copy back into ``tensor``."""
    g = world_of(comm, group)
    rop = reduce_op_for(op, tensor)
    if g.world_size == 1 or tensor.numel() == 0:
        return tensor
    acc = flat_view(tensor)
    scratch = torch.empty_like(acc)
    position, pof2, rem = fold_in(comm, g, acc, scratch, rop)
    if position >= 0:
        body(comm, g, acc, scratch, rop, position, pof2, rem)
    fold_out(comm, g, acc, rem)
    finish_reduce_(acc, rop, g.world_size)
    return copy_back(tensor, acc)
