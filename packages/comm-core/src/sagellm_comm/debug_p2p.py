"""Debug mode for point-to-point, on engines whose messages carry no dtype and size (NCCL, RCCL, HCCL).

gloo and the memory engines check every message themselves (headers; ``CommBackend.engine_checks_p2p``). On
the others, a receive into a tensor of another dtype or size returns garbage or hangs, silently. With
``SAGELLM_COMM_DEBUG=detail`` the core closes that gap:

- a send posts ``<dtype> x<numel>`` under its lane ``<src>><dst>/<tag>/<n>`` (the n-th message from src to dst
  with that tag) on the group's side channel, and never waits;
- a receive is handed to the engine at once (so two ranks that both receive before they send still pair up), and
  when it completes (a blocking ``recv`` returns, an ``irecv``'s ``wait()``), or fails, it compares the sender's
  post with its own buffer: a difference raises ``COMM_RANK_MISMATCH`` naming both sides.

The check comes after the engine ran, so it turns garbage into an error; it cannot stop an engine that aborts or
hangs on the size mismatch itself (that one ends in the receive's timeout, whose error then names the sizes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sagellm_comm.errors import RankMismatchError

__all__ = ["p2p_lane_check"]


def _shape(tensor: torch.Tensor) -> str:
    return f"{str(tensor.dtype).removeprefix('torch.')} x{tensor.numel()}"


def p2p_lane_check(
    backend: Any, op: str, args: tuple[Any, ...], counters: dict[tuple[Any, ...], int]
) -> Callable[[BaseException | None], None] | None:
    """For a send: post its shape and return None. For a receive: return ``check(error)``, to call when the
    receive completed (``error`` None) or failed; it raises ``COMM_RANK_MISMATCH`` when the shapes differ."""
    tensor, peer, group, tag = args
    me = group.rank
    src, dst = (me, peer) if op == "send" else (peer, me)
    lane = (group.group_id, src, dst, tag)
    n = counters[lane] = counters.get(lane, 0) + 1
    channel = backend.group_channel(group.group_id).scope("debug-p2p")
    key = f"{src}>{dst}/{tag}/{n}"
    mine = _shape(tensor)
    if op == "send":
        channel.set(key, mine)
        return None
    names = group.global_ranks

    def check(error: BaseException | None) -> None:
        if error is None:
            sent = channel.get(key, owner=f"rank {names[src]}", what=f"post message #{n} to rank {names[dst]}")
        elif channel.check([key]):
            sent = bytes(channel.store.get(key))
        else:
            return  # the sender never got that far: the engine's own error says enough
        try:
            channel.store.delete_key(key)
        except Exception:  # a store without deletion keeps the key; that is all
            pass
        theirs = sent.decode()
        if theirs != mine:
            raise RankMismatchError(
                f"message #{n} from rank {names[src]} to rank {names[dst]} (tag {tag}, group {group.group_id}): "
                f"rank {names[src]} sent {theirs}, rank {names[dst]} received into {mine}"
                f"{'; the buffer holds garbage' if error is None else ''}. Send and receive must use the same dtype "
                "and element count (found by SAGELLM_COMM_DEBUG=detail)."
            )

    return check
