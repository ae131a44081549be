"""A mapped region and the interface of the things that provide one.

The collective engine only ever sees a :class:`Region`: a ``MAP_SHARED`` mapping every rank of a group has mapped,
plus the offset where the group's bytes begin. A :class:`RegionProvider` knows how to make one (group rank 0
calls ``create``), how the other ranks find it (``attach`` with the handle rank 0 published) and how to make the
name disappear once everyone has it mapped (``release_name``), so that a crash later leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import mmap
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

__all__ = ["Region", "RegionProvider"]


@dataclass
class Region:
    handle: str  # what other ranks pass to ``attach`` (a path)
    size: int  # bytes of this group's region
    mapping: mmap.mmap
    offset: int = 0  # where the group's bytes begin inside ``mapping``
    unlink_path: str | None = None  # removed by ``release_name`` (None: nothing to remove, e.g. a device)
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(BufferError, ValueError):  # a view still exported: the GC unmaps it later
            self.mapping.close()


class RegionProvider(ABC):
    """Makes, finds and un-names shared regions of one kind (``kind`` is shown by ``sagellm-comm info``)."""

    kind: str = "abstract"
    #: True when every rank of a group must be on one host (futex wake-ups and pid liveness checks then work)
    host_local: bool = True

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """Whether regions can be made here, and why not."""

    @abstractmethod
    def create(self, key: str, size: int, index: int) -> Region:
        """Make a fresh zero-filled region of ``size`` bytes for group number ``index`` (unique ``key``)."""

    @abstractmethod
    def attach(self, handle: str, size: int, index: int) -> Region:
        """Map the region group rank 0 created."""

    def reserve(self, index: int, size: int) -> None:  # noqa: B027 - only carved devices need it
        """Every rank of the world calls this for every group it creates, member or not, before ``create`` /
        ``attach``: providers that carve one device into windows place group ``index`` here. Default: nothing."""

    def release_name(self, region: Region) -> None:  # noqa: B027 - providers without names keep the default
        """Remove the region's name (the mapping stays valid); idempotent. Nothing to do by default."""

    def describe(self) -> str:
        return self.kind
