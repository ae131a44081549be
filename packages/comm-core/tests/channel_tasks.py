"""Rank functions for test_side_channel.py (module-level so spawned ranks can import them by name)."""

from __future__ import annotations

from sagellm_comm.errors import CommError
from sagellm_comm.rendezvous import resolve_rendezvous
from sagellm_comm.store import open_side_channel, release_side_channel


def exchange_and_broadcast() -> dict:
    rdzv = resolve_rendezvous(timeout=30)
    channel = open_side_channel(rdzv, "unit")
    try:
        everyone = channel.exchange("hello", f"from {rdzv.rank}", rdzv.rank, rdzv.world_size)
        unique_id = channel.broadcast("uid", b"\x00\x01id" if rdzv.rank == 0 else None, 0, rdzv.rank)
        group = channel.scope("groups/g1[0,1]")
        mine = group.exchange("x", str(rdzv.rank * 10), rdzv.rank, rdzv.world_size)
        return {
            "prefix": channel.prefix,
            "everyone": [v.decode() for v in everyone],
            "uid": unique_id,
            "group": [v.decode() for v in mine],
        }
    finally:
        release_side_channel(rdzv)


def rank_one_never_publishes() -> str:
    rdzv = resolve_rendezvous(timeout=30)
    channel = open_side_channel(rdzv, "unit")
    try:
        if rdzv.rank == 0:
            try:
                channel.scope("late", timeout_s=1.0).exchange("addr", "x", 0, rdzv.world_size, what="post its address")
            except CommError as exc:
                return f"{exc.code.value}: {exc.message}"
            return "no error"
        channel.scope("sync").get("done", owner="rank 0", timeout=30)  # keep the store's host alive until rank 0 is
        return "stayed"
    finally:
        if rdzv.rank == 0:
            channel.scope("sync").set("done", "1")
        release_side_channel(rdzv)
