"""The nccl backend's direct path: one ctypes NCCL communicator per group, formed through the core's side channel.

Rank 0 of a group draws the ``ncclUniqueId`` and publishes it on the group's side channel (the c10d pattern, on the
store the core opened); every member forms its communicator from it. The ops enqueue on the caller's current CUDA
stream, one NCCL launch each, which is what CUDA graph capture needs.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from sagellm_comm.store import SideChannel
from sagellm_comm.work import Work
from sagellm_comm_nccl.binding import NcclCommunicator, NcclLibrary

__all__ = ["DirectPath", "StreamWork", "agree_unique_id"]

log = logging.getLogger(__name__)
UID_KEY = "direct/nccl-unique-id"


class StreamWork(Work):
    """An op enqueued on the caller's current stream by the direct path.

    ``wait()`` makes the now-current stream wait for the op (a no-op when it is the same stream) and surfaces NCCL's
    asynchronous errors; ``synchronize()`` blocks the CPU (bounded). Inside CUDA graph capture no event is recorded:
    the op is a node of the graph, ordered by the stream.
    """

    def __init__(self, op: str, comm: NcclCommunicator) -> None:
        super().__init__(op)
        self.device = comm.device
        self._comm = comm
        capturing = torch.cuda.is_current_stream_capturing()
        self._event = None if capturing else torch.cuda.current_stream(comm.device).record_event()

    def is_completed(self) -> bool:
        return self._event is None or bool(self._event.query())

    def _wait(self, timeout: float | None) -> bool:
        if self._event is not None:
            torch.cuda.current_stream(self.device).wait_event(self._event)
        self._comm.check_async_error()
        return True


def agree_unique_id(library: NcclLibrary, channel: SideChannel, rank: int, root_name: Any = 0) -> bytes:
    """Group rank 0 draws an ``ncclUniqueId`` and publishes it on ``channel``; every rank returns the same 128 bytes
    (bounded by the channel's timeout, naming the root if it never publishes)."""
    return channel.broadcast(
        UID_KEY,
        library.unique_id() if rank == 0 else None,
        0,
        rank,
        root_name=root_name,
        what="publish the NCCL unique id of the direct path",
    )


class DirectPath:
    """The direct communicators of one backend instance, by group id."""

    def __init__(self, library: NcclLibrary) -> None:
        self.library = library
        self._comms: dict[str, NcclCommunicator] = {}

    def open(
        self,
        group_id: str,
        channel: SideChannel,
        rank: int,
        world_size: int,
        device: torch.device,
        timeout_s: float,
        root_name: Any = 0,
    ) -> NcclCommunicator:
        """Collective over the group's members: form the group's communicator (``rank`` is the group rank)."""
        uid = agree_unique_id(self.library, channel, rank, root_name)
        comm = NcclCommunicator(self.library, uid, rank, world_size, device, timeout_s=timeout_s)
        self._comms[group_id] = comm
        return comm

    def get(self, group_id: str) -> NcclCommunicator | None:
        return self._comms.get(group_id)

    def close(self, group_id: str | None = None, drain_s: float = 30.0) -> None:
        ids = list(self._comms) if group_id is None else [group_id]
        for gid in ids:
            comm = self._comms.pop(gid, None)
            if comm is None:
                continue
            try:
                comm.destroy(drain_s)
            except Exception as exc:  # releasing must go on for the other groups
                log.warning("destroying the direct NCCL communicator of group %s failed: %s", gid, exc)
