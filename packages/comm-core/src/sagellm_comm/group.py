"""Communication groups: the world and sub-groups (TP, PP, ...) of a backend.

A ``CommGroup`` is a communicator view: ``rank`` and ``world_size`` are *within the group*, and the root/peer
ranks given to collectives called with ``group=g`` are group ranks (as in NCCL and vLLM's GroupCoordinator).
``global_ranks`` maps them back; it is sorted ascending whatever order the ranks were given in (torch and
vLLM order group ranks the same way). On ranks outside the group ``is_member`` is False and every op raises
``COMM_RANK_MISMATCH``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sagellm_protocol import CommBackendType, CommGroupInfo

from sagellm_comm.errors import InvalidArgumentError, RankMismatchError

if TYPE_CHECKING:
    import torch

    from sagellm_comm.backend import CommBackend

__all__ = ["CommGroup", "validate_group_ranks"]


def validate_group_ranks(ranks: Sequence[int], world_size: int) -> tuple[int, ...]:
    """Check a sub-group's rank list (non-empty, ints, no duplicates, each in ``[0, world_size)``) and return it
    sorted: group rank ``i`` is the ``i``-th smallest global rank, as in ``torch.distributed.new_group``."""
    try:
        as_tuple = tuple(ranks)
    except TypeError:
        raise InvalidArgumentError(f"group ranks must be a sequence of ints, got {ranks!r}") from None
    if not as_tuple:
        raise InvalidArgumentError("group ranks must not be empty")
    if any(not isinstance(r, int) or isinstance(r, bool) for r in as_tuple):
        raise InvalidArgumentError(f"group ranks must be ints, got {list(as_tuple)!r}")
    dupes = sorted({r for r in as_tuple if as_tuple.count(r) > 1})
    if dupes:
        raise InvalidArgumentError(f"group ranks {list(as_tuple)} repeat rank(s) {dupes}; list each rank once")
    bad = [r for r in as_tuple if not 0 <= r < world_size]
    if bad:
        raise RankMismatchError(
            f"group ranks {bad} are outside the world (world_size={world_size}, valid ranks 0..{world_size - 1})"
        )
    return tuple(sorted(as_tuple))


class CommGroup:
    """A set of ranks that communicate together, bound to one initialized backend."""

    def __init__(
        self,
        backend: CommBackend,
        global_ranks: Sequence[int],
        group_id: str,
        handle: Any = None,
        timeout_s: float | None = None,
    ) -> None:
        self.backend = backend
        self.global_ranks: tuple[int, ...] = tuple(global_ranks)
        self.group_id = group_id
        self.handle = handle  # the engine's own object (e.g. a torch ProcessGroup); None on non-members
        self.timeout_s = timeout_s
        self._global_rank = backend._global_rank
        self._index = {g: i for i, g in enumerate(self.global_ranks)}
        self.rank: int = self._index.get(self._global_rank, -1)
        self.world_size: int = len(self.global_ranks)

    # -- the seed's spelling: CommGroup.create(world_size=4, rank=0) ----------------------------------------
    @classmethod
    def create(
        cls,
        world_size: int | None = None,
        rank: int | None = None,
        backend: str | CommBackend | None = None,
        **init_options: Any,
    ) -> CommGroup:
        """Return the world group of an initialized backend, initializing one if needed.

        ``backend`` is a name (default: auto selection) or a ``CommBackend`` instance. If a backend of that name
        is already initialized in this process with the same world size and rank, its world group is returned.
        """
        from sagellm_comm.backend import CommBackend
        from sagellm_comm.registry import current_backend, get_comm_backend

        if isinstance(backend, CommBackend):
            comm = backend
        else:
            existing = current_backend(backend)
            if (
                existing is not None
                and (world_size is None or existing.get_world_size() == world_size)
                and (rank is None or existing.get_rank() == rank)
            ):
                return existing.world_group
            comm = get_comm_backend(backend)
        if not comm.is_initialized:
            comm.init_process_group(world_size=world_size, rank=rank, **init_options)
        return comm.world_group

    # -- rank mapping ----------------------------------------------------------------------------------------
    @property
    def is_member(self) -> bool:
        return self.rank >= 0

    @property
    def ranks(self) -> list[int]:
        return list(self.global_ranks)

    def global_rank(self, group_rank: int) -> int:
        """The global rank of group rank ``group_rank`` (``RankMismatchError`` when out of range)."""
        if isinstance(group_rank, bool) or not isinstance(group_rank, int):
            raise InvalidArgumentError(f"group rank must be an int, got {group_rank!r}")
        if not 0 <= group_rank < self.world_size:
            raise RankMismatchError(
                f"group rank {group_rank} is out of range for group {self.group_id} of size "
                f"{self.world_size} (valid 0..{self.world_size - 1})"
            )
        return self.global_ranks[group_rank]

    def group_rank(self, global_rank: int) -> int:
        """The rank in this group of global rank ``global_rank`` (``RankMismatchError`` when not a member)."""
        if isinstance(global_rank, bool) or not isinstance(global_rank, int):
            raise InvalidArgumentError(f"global rank must be an int, got {global_rank!r}")
        try:
            return self._index[global_rank]
        except KeyError:
            raise RankMismatchError(f"global rank {global_rank} is not in group {self.group_id}") from None

    def info(self) -> CommGroupInfo:
        """This group as the protocol's ``CommGroupInfo``."""
        try:
            btype = CommBackendType(self.backend.name)
        except ValueError:
            btype = CommBackendType.CUSTOM
        meta = {"backend_name": self.backend.name, "rank": self.rank}
        info = CommGroupInfo(
            group_id=self.group_id,
            backend=btype,
            world_size=self.world_size,
            ranks=list(self.global_ranks),
            root_rank=0,
            metadata=meta,
        )
        if self.timeout_s is not None:
            info.timeout_ms = self.timeout_s * 1000.0
        return info

    # -- collectives on this group (group ranks for roots and peers) ------------------------------------------
    def all_reduce(self, tensor: torch.Tensor, op: Any = "sum", async_op: bool = False) -> Any:
        """``CommBackend.all_reduce`` on this group: reduce ``tensor`` in place across its ranks."""
        return self.backend.all_reduce(tensor, op, self, async_op)

    def all_gather(self, tensor: torch.Tensor, async_op: bool = False, **kw: Any) -> Any:
        """``CommBackend.all_gather`` on this group: every rank's ``tensor``, in group-rank order."""
        return self.backend.all_gather(tensor, self, async_op, **kw)

    def all_gather_into_tensor(self, output: torch.Tensor, tensor: torch.Tensor, async_op: bool = False) -> Any:
        """``CommBackend.all_gather_into_tensor`` on this group: every rank's ``tensor``, concatenated in ``output``."""
        return self.backend.all_gather_into_tensor(output, tensor, self, async_op)

    def reduce_scatter(self, output: torch.Tensor, input: Any, op: Any = "sum", async_op: bool = False) -> Any:
        """``CommBackend.reduce_scatter`` on this group: reduce ``input``, this rank's share into ``output``."""
        return self.backend.reduce_scatter(output, input, op, self, async_op)

    def broadcast(self, tensor: torch.Tensor, src_rank: int = 0, async_op: bool = False) -> Any:
        """``CommBackend.broadcast`` on this group: group rank ``src_rank``'s ``tensor`` into every rank's."""
        return self.backend.broadcast(tensor, src_rank, self, async_op)

    def reduce(self, tensor: torch.Tensor, dst_rank: int = 0, op: Any = "sum", async_op: bool = False) -> Any:
        """``CommBackend.reduce`` on this group: the reduction lands in group rank ``dst_rank``'s ``tensor``."""
        return self.backend.reduce(tensor, dst_rank, op, self, async_op)

    def gather(self, tensor: torch.Tensor, gather_list: Any = None, dst_rank: int = 0, async_op: bool = False) -> Any:
        """``CommBackend.gather`` on this group: every rank's ``tensor`` into ``gather_list`` on rank ``dst_rank``."""
        return self.backend.gather(tensor, gather_list, dst_rank, self, async_op)

    def scatter(self, tensor: torch.Tensor, scatter_list: Any = None, src_rank: int = 0, async_op: bool = False) -> Any:
        """``CommBackend.scatter`` on this group: rank ``src_rank``'s ``scatter_list[i]`` to rank ``i``."""
        return self.backend.scatter(tensor, scatter_list, src_rank, self, async_op)

    def all_to_all(self, output: Any, input: Any, async_op: bool = False) -> Any:
        """``CommBackend.all_to_all`` on this group: chunk ``i`` of ``input`` to group rank ``i``, into ``output``."""
        return self.backend.all_to_all(output, input, self, async_op)

    def barrier(self, async_op: bool = False, timeout: float | None = None) -> Any:
        """``CommBackend.barrier`` on this group: returns once every rank has reached it (at most ``timeout`` s)."""
        return self.backend.barrier(self, async_op, timeout=timeout)

    def send(self, tensor: torch.Tensor, dst_rank: int, tag: int = 0) -> None:
        """``CommBackend.send`` on this group: ``tensor`` to group rank ``dst_rank``, matched by ``tag``."""
        return self.backend.send(tensor, dst_rank, self, tag)

    def recv(self, tensor: torch.Tensor, src_rank: int, tag: int = 0) -> Any:
        """``CommBackend.recv`` on this group: into ``tensor`` from group rank ``src_rank``, matched by ``tag``."""
        return self.backend.recv(tensor, src_rank, self, tag)

    def __repr__(self) -> str:
        return (
            f"CommGroup(id={self.group_id!r}, backend={self.backend.name!r}, ranks={list(self.global_ranks)}, "
            f"rank={self.rank})"
        )
