"""``CollectiveOps``: the seed's static spelling, ``CollectiveOps.all_reduce(tensor, group=group)``.

Each call runs on ``group`` (a ``CommGroup``), or on the world group of the backend initialized in this process
when no group is given.
"""

from __future__ import annotations

from typing import Any

import torch

from sagellm_comm.errors import GroupNotFoundError, NotInitializedError
from sagellm_comm.group import CommGroup
from sagellm_comm.registry import current_backend

__all__ = ["CollectiveOps"]


def _resolve(group: CommGroup | None) -> CommGroup:
    if group is not None:
        if not isinstance(group, CommGroup):
            raise GroupNotFoundError(
                f"CollectiveOps: group must be a CommGroup (CommGroup.create(...) or "
                f"backend.create_group(...)), got {type(group).__name__} {group!r}"
            )
        return group
    backend = current_backend()
    if backend is None:
        raise NotInitializedError(
            "CollectiveOps called with no group and no initialized backend: create one with "
            "CommGroup.create(world_size=..., rank=...) and pass group="
        )
    return backend.world_group


class CollectiveOps:
    """Static collectives on a ``CommGroup``: each method calls the group's method of the same name.

    ``group=None`` runs on the world group of the backend initialized in this process (``NotInitializedError``
    when there is none); anything but a ``CommGroup`` raises ``GroupNotFoundError``.
    """

    @staticmethod
    def all_reduce(
        tensor: torch.Tensor, op: Any = "sum", group: CommGroup | None = None, async_op: bool = False
    ) -> Any:
        """Reduce ``tensor`` in place across the group (``CommGroup.all_reduce``)."""
        return _resolve(group).all_reduce(tensor, op, async_op)

    @staticmethod
    def all_gather(tensor: torch.Tensor, group: CommGroup | None = None, async_op: bool = False) -> Any:
        """Every rank's ``tensor``, as a list in group-rank order (``CommGroup.all_gather``)."""
        return _resolve(group).all_gather(tensor, async_op)

    @staticmethod
    def reduce_scatter(
        output: torch.Tensor, input: Any, op: Any = "sum", group: CommGroup | None = None, async_op: bool = False
    ) -> Any:
        """Reduce ``input`` across the group, this rank's share into ``output`` (``CommGroup.reduce_scatter``)."""
        return _resolve(group).reduce_scatter(output, input, op, async_op)

    @staticmethod
    def broadcast(
        tensor: torch.Tensor, src_rank: int = 0, group: CommGroup | None = None, async_op: bool = False
    ) -> Any:
        """Copy group rank ``src_rank``'s ``tensor`` into every rank's ``tensor`` (``CommGroup.broadcast``)."""
        return _resolve(group).broadcast(tensor, src_rank, async_op)

    @staticmethod
    def reduce(
        tensor: torch.Tensor, dst_rank: int = 0, op: Any = "sum", group: CommGroup | None = None, async_op: bool = False
    ) -> Any:
        """Reduce ``tensor`` across the group into group rank ``dst_rank``'s ``tensor`` (``CommGroup.reduce``)."""
        return _resolve(group).reduce(tensor, dst_rank, op, async_op)

    @staticmethod
    def all_to_all(output: Any, input: Any, group: CommGroup | None = None, async_op: bool = False) -> Any:
        """Send chunk ``i`` of ``input`` to group rank ``i``, receive into ``output`` (``CommGroup.all_to_all``)."""
        return _resolve(group).all_to_all(output, input, async_op)

    @staticmethod
    def barrier(group: CommGroup | None = None, timeout: float | None = None) -> Any:
        """Block until every rank of the group has reached the barrier, at most ``timeout`` seconds."""
        return _resolve(group).barrier(timeout=timeout)
