"""``MpshmBackend``: collectives between the ranks of one host over Python's ``multiprocessing.shared_memory``.

An example of a complete out-of-tree plugin, not a fast backend (the in-tree ``shm`` backend of isagellm-comm-cxl-ub
is the real one). How it works:

- every rank owns one shared-memory segment holding two buffers; call number ``k`` (the same on every rank: ranks
  call collectives in the same order) uses buffer ``k % 2``;
- a call writes this rank's contribution into its own buffer, then meets the others through the side channel the core
  hands the backend (``rendezvous.store``): each rank posts ``step k: generation, capacity, bytes`` and waits for
  every peer's post, at most the group's timeout (``COMM_TIMEOUT`` naming the ranks that never posted);
- then every rank reads its peers' buffers and computes the result with torch, in rank order, so every rank gets the
  same bits. No second meeting is needed: a rank writes buffer ``k % 2`` again only at call ``k + 2``, after the
  meeting of call ``k + 1``, which every peer reaches only once it has finished reading call ``k``;
- a message larger than a rank's buffers makes it replace its segment by a larger one (a new generation); peers map
  the generation each rank announces, after the meeting. Ranks that pass different sizes get ``INVALID_ARGUMENT``.

Segments are named ``sgmpshm-<job token>-<rank>-<generation>``; the owner unlinks its segments when they are replaced
and at ``destroy()``, peers only unmap them. One host, the world group only, blocking calls only, contiguous CPU
tensors only: everything else is left undeclared, so the core refuses it with ``COMM_BACKEND_NOT_SUPPORTED``.
"""

from __future__ import annotations

import contextlib
import mmap
import secrets
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any, ClassVar

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.backend import CommBackend
from sagellm_comm.capabilities import Capabilities
from sagellm_comm.errors import InvalidArgumentError
from sagellm_comm.group import CommGroup
from sagellm_comm.rendezvous import Rendezvous
from sagellm_comm.store import SideChannel

__all__ = ["MpshmBackend"]

FLOATS = frozenset({torch.float32, torch.float64, torch.float16, torch.bfloat16})
INTS = frozenset({torch.int32, torch.int64})
SHM_DIR = Path("/dev/shm")  # where Linux keeps POSIX shared memory (the probe checks it)
MIN_CAPACITY = 1 << 16  # bytes per buffer of a first segment; grows to the next power of two a message needs

REDUCERS = {
    ReduceOp.SUM: torch.add,
    ReduceOp.AVG: torch.add,  # then divided by the world size
    ReduceOp.PROD: torch.mul,
    ReduceOp.MIN: torch.minimum,
    ReduceOp.MAX: torch.maximum,
}


class _Segment:
    """One rank's segment as a uint8 tensor: created (and later unlinked) by its owner through ``SharedMemory``, whose
    resource tracker also unlinks it if the owner dies without ``destroy()``; mapped by peers from /dev/shm directly,
    so that no peer's tracker claims (and unlinks) a segment it does not own."""

    def __init__(self, name: str, capacity: int, create: bool) -> None:
        self.name, self.capacity, self.owner = name, capacity, create
        if create:
            self.shm: SharedMemory | None = SharedMemory(name=name, create=True, size=2 * capacity)
            self.map: Any = self.shm.buf
        else:
            self.shm = None
            with open(SHM_DIR / name, "r+b") as f:
                self.map = mmap.mmap(f.fileno(), 2 * capacity)
        self.bytes = torch.frombuffer(self.map, dtype=torch.uint8)

    def view(self, step: int, like: torch.Tensor) -> torch.Tensor:
        """Buffer ``step % 2`` as a tensor of ``like``'s dtype and shape."""
        nbytes = like.numel() * like.element_size()
        start = (step % 2) * self.capacity
        return self.bytes[start : start + nbytes].view(like.dtype).view(like.shape)

    def close(self) -> None:
        """Unmap, and unlink the name if this rank owns it. The unmap waits for the process's exit when a tensor
        viewing the segment is still alive somewhere (a traceback, say); the unlink never waits."""
        del self.bytes
        if self.shm is not None:
            with contextlib.suppress(BufferError):
                self.shm.close()
            self.shm.unlink()
        else:
            with contextlib.suppress(BufferError):
                self.map.close()


class MpshmBackend(CommBackend):
    """Blocking all_reduce, broadcast, all_gather and barrier between the ranks of one host."""

    name: ClassVar[str] = "mpshm"
    capabilities: ClassVar[Capabilities] = Capabilities(
        ops=frozenset({"all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "barrier"}),
        dtypes=FLOATS | INTS,
        devices=frozenset({"cpu"}),
        reduce_support={
            ReduceOp.SUM: FLOATS | INTS,
            ReduceOp.PROD: FLOATS | INTS,
            ReduceOp.MIN: FLOATS | INTS,
            ReduceOp.MAX: FLOATS | INTS,
            ReduceOp.AVG: FLOATS,  # an integer average would need a rounding rule: not declared
        },
        non_contiguous=False,
        sub_groups=False,
        async_ops=False,
    )

    def _init(self, rendezvous: Rendezvous, options: dict[str, Any]) -> Any:
        self._me, self._size = rendezvous.rank, rendezvous.world_size
        self._side: SideChannel = rendezvous.store.scope("mpshm")
        token = secrets.token_hex(6) if self._me == 0 else None
        self._job = self._side.broadcast("token", token, 0, self._me, what="publish the job's token").decode()
        self._calls, self._gen = 0, 0
        self._own: _Segment | None = None
        self._mapped: dict[int, _Segment] = {}
        self._grow(MIN_CAPACITY)
        return None  # the world group needs no handle: the state lives on the backend

    def _destroy(self) -> None:
        segments = [*([self._own] if self._own is not None else []), *self._mapped.values()]
        self._mapped, self._own = {}, None
        for segment in segments:
            segment.close()

    # ------------------------------------------------------------------------------------------------ one step
    def _segment_name(self, rank: int, generation: int) -> str:
        return f"sgmpshm-{self._job}-{rank}-{generation}"

    def _grow(self, nbytes: int) -> None:
        """Replace this rank's segment by one whose buffers hold ``nbytes`` (a power of two, at least 64 KiB)."""
        capacity = max(MIN_CAPACITY, 1 << (nbytes - 1).bit_length())
        old, self._own = self._own, None
        self._gen += 1
        self._own = _Segment(self._segment_name(self._me, self._gen), capacity, create=True)
        if old is not None:
            old.close()  # peers that still map it keep their mapping; the name is gone

    def _meet(self, nbytes: int, timeout: float | None = None) -> list[_Segment]:
        """Post this step, wait for every rank's post (bounded: COMM_TIMEOUT names the missing ranks), check that
        the sizes agree, and return every rank's segment, mapped at the generation it announced."""
        step, self._calls = self._calls, self._calls + 1
        mine = f"{self._gen}:{self._own.capacity}:{nbytes}"
        channel = self._side
        if timeout is not None:  # the same keys, another bound on the wait
            channel = SideChannel(channel.base, channel.prefix, timeout, base=channel.base)
        posts = [
            [int(x) for x in p.decode().split(":")]
            for p in channel.exchange(f"step{step}", mine, self._me, self._size, what="join")
        ]
        if step >= 1:  # every rank posted this step, so every rank has read the previous step's keys
            self._side.store.delete_key(f"step{step - 1}/{self._me}")
        if len({size for _, _, size in posts}) > 1:
            raise InvalidArgumentError(
                f"mpshm call {step}: the ranks passed different sizes (bytes per rank: {[s for _, _, s in posts]})"
            )
        segments = []
        for rank, (generation, capacity, _) in enumerate(posts):
            if rank == self._me or nbytes == 0:
                segments.append(self._own)  # nothing to read: a barrier, or empty tensors
                continue
            held = self._mapped.get(rank)
            name = self._segment_name(rank, generation)
            if held is None or held.name != name:
                if held is not None:
                    held.close()
                held = self._mapped[rank] = _Segment(name, capacity, create=False)
            segments.append(held)
        return segments

    def _publish(self, tensor: torch.Tensor | None, like: torch.Tensor) -> tuple[int, list[_Segment]]:
        """Write ``tensor`` (None: nothing) into this step's buffer and meet the others; (step, segments)."""
        nbytes = like.numel() * like.element_size()
        if nbytes > self._own.capacity:
            self._grow(nbytes)
        step = self._calls
        if tensor is not None and nbytes:
            self._own.view(step, like).copy_(tensor)
        return step, self._meet(nbytes)

    # -------------------------------------------------------------------------------------------------- ops
    def _all_reduce(self, tensor: torch.Tensor, op: ReduceOp, group: CommGroup, async_op: bool) -> None:
        step, segments = self._publish(tensor, tensor)
        if not tensor.numel():
            return None
        reduce = REDUCERS[op]
        acc = segments[0].view(step, tensor).clone()
        for segment in segments[1:]:
            acc = reduce(acc, segment.view(step, tensor))
        if op == ReduceOp.AVG:
            acc = acc / self._size
        tensor.copy_(acc)
        return None

    def _broadcast(self, tensor: torch.Tensor, src: int, group: CommGroup, async_op: bool) -> None:
        step, segments = self._publish(tensor if self._me == src else None, tensor)
        if self._me != src and tensor.numel():
            tensor.copy_(segments[src].view(step, tensor))
        return None

    def _all_gather(self, output: list[torch.Tensor], tensor: torch.Tensor, group: CommGroup, async_op: bool) -> None:
        step, segments = self._publish(tensor, tensor)
        if tensor.numel():
            for out, segment in zip(output, segments, strict=True):
                out.copy_(segment.view(step, tensor))
        return None

    def _all_gather_into_tensor(
        self, output: torch.Tensor, tensor: torch.Tensor, group: CommGroup, async_op: bool
    ) -> None:
        flat, n = tensor.reshape(-1), tensor.numel()
        step, segments = self._publish(flat, flat)
        for rank, segment in enumerate(segments if n else []):
            output.view(-1)[rank * n : (rank + 1) * n].copy_(segment.view(step, flat))
        return None

    def _barrier(self, group: CommGroup, async_op: bool, timeout: float | None) -> None:
        self._meet(0, timeout)
        return None
