"""Debug mode: cross-rank call checks before every collective (``SAGELLM_COMM_DEBUG=detail``).

This is the contract's ``TORCH_DISTRIBUTED_DEBUG=DETAIL``. Before a collective runs, each rank posts the call's
fingerprint on the group's side channel:

- the op, plus every tensor argument's dtype and element count;
- the roots and the reduce op;
- not the async flag and not the per-rank optional lists (``gather_list``, list-form all_to_all), which may
  legitimately differ between ranks.

Each rank then waits for the other members' fingerprints of the same call number and compares them.

- ranks that disagree all raise ``COMM_RANK_MISMATCH`` listing every rank's call, before the engine sees
  mismatched input (gloo would abort the process on a size mismatch);
- a rank that never arrives makes the others raise ``COMM_TIMEOUT`` naming it, the op and the call number.

It costs a store round trip per collective, and it checks async ops at submission, so in this mode an async op's
submission waits for the other ranks to reach the same call. Use it to find a bug, not in production. Off
(``SAGELLM_COMM_DEBUG`` unset or ``off``), it costs nothing.
"""

from __future__ import annotations

import enum
import os
from typing import Any

import torch

from sagellm_comm.errors import CommTimeoutError, RankMismatchError
from sagellm_comm.group import CommGroup

__all__ = ["DEBUG_ENV", "check_call", "debug_detail", "describe", "fingerprint", "summarize"]

DEBUG_ENV = "SAGELLM_COMM_DEBUG"


def debug_detail() -> bool:
    return os.environ.get(DEBUG_ENV, "off").strip().lower() in ("detail", "1", "on")


def summarize(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """What identifies a call across ranks, cheaply: ``(dtype, numel)`` per tensor, the ints (roots) and the reduce
    op; async flags, timeouts and per-rank optional lists are left out."""
    out: list[Any] = []
    for a in args:
        kind = type(a)
        how = _HOW.get(kind)
        if how is None:  # classified once per type: isinstance on torch.Tensor alone costs more than the rest
            how = _HOW[kind] = _classify(kind)
        if how == _TENSOR:
            out.append((a.dtype, a.numel()))
        elif how == _INT:
            out.append(a)
        elif how == _STR_ENUM:  # a ReduceOp
            out.append(a._value_)
        elif how == _VALUE and isinstance(getattr(a, "value", None), str):
            out.append(a.value)
    return tuple(out)


_SKIP, _TENSOR, _INT, _STR_ENUM, _VALUE = range(5)
_HOW: dict[type, int] = {}


def _classify(kind: type) -> int:
    if issubclass(kind, torch.Tensor):
        return _TENSOR
    if issubclass(kind, (bool, type(None), list, tuple, float)):
        return _SKIP
    if issubclass(kind, int):
        return _INT
    if issubclass(kind, enum.Enum) and all(isinstance(m.value, str) for m in kind):
        return _STR_ENUM
    if issubclass(kind, CommGroup) and not hasattr(kind, "value"):
        return _SKIP
    return _VALUE


def describe(op: str, summary: tuple[Any, ...]) -> str:
    parts = [op]
    for x in summary:
        if isinstance(x, tuple):
            parts.append(f"{str(x[0]).removeprefix('torch.')} x{x[1]}")
        elif isinstance(x, int):
            parts.append(f"rank {x}")
        else:
            parts.append(str(x))
    return " ".join(parts)


def fingerprint(op: str, args: tuple[Any, ...]) -> str:
    return describe(op, summarize(args))


def check_call(backend: Any, group: Any, op: str, args: tuple[Any, ...], seqs: dict[str, int]) -> None:
    """Compare this call with every member's call of the same number on ``group`` (collective; see the module)."""
    seq = seqs.get(group.group_id, 0) + 1
    seqs[group.group_id] = seq
    channel = backend.group_channel(group.group_id).scope("debug-calls")
    mine = fingerprint(op, args)
    channel.set(f"{seq}/{group.rank}", mine)
    owners = [f"rank {r}" for r in group.global_ranks]
    try:
        channel.wait(
            [f"{seq}/{r}" for r in range(group.world_size)],
            owners=owners,
            what=f"reach call #{seq} on group {group.group_id} ({mine} here)",
        )
    except CommTimeoutError:
        raise
    calls = [channel.get(f"{seq}/{r}").decode() for r in range(group.world_size)]
    if seq > 2:  # every member read call seq-2 before posting seq-1, which this rank saw: drop its own old key
        try:
            channel.store.delete_key(f"{seq - 2}/{group.rank}")
        except Exception:  # a store without deletion keeps the keys; that is all
            pass
    if len(set(calls)) > 1:
        listing = "; ".join(f"rank {g}: {c}" for g, c in zip(group.global_ranks, calls, strict=True))
        raise RankMismatchError(
            f"call #{seq} on group {group.group_id}: the ranks are not running the same collective -- {listing}. "
            "Every rank must call the same ops in the same order with matching tensors (found by "
            f"{DEBUG_ENV}=detail before the engine saw the call)."
        )
