"""Rank functions for the nccl tests (module-level so spawned ranks import them by name)."""

from __future__ import annotations

from sagellm_comm.rendezvous import resolve_rendezvous
from sagellm_comm.store import open_side_channel, release_side_channel
from sagellm_comm_nccl.binding import find_library
from sagellm_comm_nccl.direct import agree_unique_id


def unique_id_through_side_channel() -> bytes:
    """What each rank receives as the direct path's unique id for the world and for a sub-group."""
    rdzv = resolve_rendezvous(timeout=30)
    channel = open_side_channel(rdzv, "nccl")
    try:
        world = agree_unique_id(find_library(), channel, rdzv.rank)
        # a group whose rank 0 is global rank 1: the other member receives that rank's id
        group_rank = (rdzv.rank - 1) % rdzv.world_size
        group = agree_unique_id(find_library(), channel.scope("groups/g[1,0]"), group_rank, root_name=1)
        channel.exchange("done", b"1", rdzv.rank, rdzv.world_size)  # the store's host stays until both read
        return world + group
    finally:
        release_side_channel(rdzv)
