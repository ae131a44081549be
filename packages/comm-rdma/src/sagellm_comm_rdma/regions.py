"""Memory regions: what a rank registered (``MemoryRegion``) and what a peer needs to reach it (``RegionDescriptor``).

A descriptor travels as JSON bytes (``encode``/``decode``): the owner's rank and NIXL agent name, the region's id,
address, length, memory kind and device, and the NIXL metadata (connection info plus the region's remote keys)
that a peer loads before its first transfer to the region. Nothing is unpickled.

Offsets and lengths of a transfer are checked against both regions before anything is posted
(``check_span``): a transfer outside a region is refused with ``INVALID_ARGUMENT`` and nothing is sent.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from sagellm_comm.errors import InvalidArgumentError

__all__ = ["MemoryRegion", "RegionDescriptor", "Span", "check_span", "decode_descriptors", "encode_descriptors"]


@dataclass(frozen=True)
class RegionDescriptor:
    """A registered region as its peers see it."""

    rank: int
    agent: str
    region_id: int
    address: int
    length: int
    kind: str  # "DRAM" or "VRAM"
    device_id: int
    metadata: bytes = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (what ``encode`` writes; protocol messages embed it)."""
        return {
            "rank": self.rank,
            "agent": self.agent,
            "id": self.region_id,
            "addr": self.address,
            "len": self.length,
            "kind": self.kind,
            "dev": self.device_id,
            "md": base64.b64encode(self.metadata).decode(),
        }

    @classmethod
    def from_dict(cls, d: Any) -> RegionDescriptor:
        try:
            return cls(
                int(d["rank"]),
                str(d["agent"]),
                int(d["id"]),
                int(d["addr"]),
                int(d["len"]),
                str(d["kind"]),
                int(d["dev"]),
                base64.b64decode(d["md"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgumentError(
                f"not a region descriptor ({type(exc).__name__}: {exc}); pass the bytes "
                "of RegionDescriptor.encode() or the descriptor itself"
            ) from exc

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> RegionDescriptor:
        try:
            d = json.loads(raw)
        except ValueError as exc:
            raise InvalidArgumentError(f"not a region descriptor (not JSON: {exc})") from exc
        return cls.from_dict(d)


def encode_descriptors(descriptors: Any) -> bytes:
    """A list of descriptors as one JSON array (what ``exchange``/``publish`` post on the side channel)."""
    return json.dumps([d.to_dict() for d in descriptors], separators=(",", ":")).encode()


def decode_descriptors(raw: bytes) -> list[RegionDescriptor]:
    try:
        items = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgumentError(f"not a list of region descriptors (not JSON: {exc})") from exc
    if not isinstance(items, list):
        raise InvalidArgumentError(f"not a list of region descriptors: {type(items).__name__}")
    return [RegionDescriptor.from_dict(d) for d in items]


@dataclass(eq=False)
class MemoryRegion:
    """A region this rank registered with ``TransferEngine.register``; valid until ``deregister``."""

    descriptor: RegionDescriptor
    buffer: Any = field(repr=False)  # the tensor (or object) kept alive while registered
    registration: Any = field(repr=False, default=None)
    registered: bool = True

    @property
    def length(self) -> int:
        return self.descriptor.length

    @property
    def address(self) -> int:
        return self.descriptor.address


# one entry of a batch: (local region, local offset, remote region, remote offset, length)
Span = tuple[MemoryRegion, int, RegionDescriptor, int, int]


def check_span(index: int, span: Any, rank: int) -> tuple[MemoryRegion, int, RegionDescriptor, int, int]:
    """Validate one batch entry; raise ``INVALID_ARGUMENT`` naming the entry and the bound it breaks."""
    if not isinstance(span, (tuple, list)) or len(span) != 5:
        raise InvalidArgumentError(
            f"transfer entry {index} must be (local_region, local_offset, remote_descriptor, "
            f"remote_offset, length), got {span!r}"
        )
    local, loff, remote, roff, length = span
    if not isinstance(local, MemoryRegion):
        raise InvalidArgumentError(
            f"transfer entry {index}: the local side must be a MemoryRegion from "
            f"TransferEngine.register, got {type(local).__name__}"
        )
    if not local.registered:
        raise InvalidArgumentError(
            f"transfer entry {index}: local region {local.descriptor.region_id} was "
            "deregistered; register the buffer again"
        )
    if local.descriptor.rank != rank:
        raise InvalidArgumentError(
            f"transfer entry {index}: the local region belongs to rank {local.descriptor.rank}, not to this rank {rank}"
        )
    if not isinstance(remote, RegionDescriptor):
        raise InvalidArgumentError(
            f"transfer entry {index}: the remote side must be a RegionDescriptor (from "
            f"exchange/lookup), got {type(remote).__name__}"
        )
    for what, value in (("local offset", loff), ("remote offset", roff), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgumentError(f"transfer entry {index}: {what} must be an int >= 0, got {value!r}")
    if length == 0:
        raise InvalidArgumentError(f"transfer entry {index}: length is 0 (leave empty entries out of the batch)")
    if loff + length > local.length:
        raise InvalidArgumentError(
            f"transfer entry {index}: local bytes [{loff}, {loff + length}) fall outside the "
            f"local region of {local.length} bytes; nothing was sent"
        )
    if roff + length > remote.length:
        raise InvalidArgumentError(
            f"transfer entry {index}: remote bytes [{roff}, {roff + length}) fall outside "
            f"rank {remote.rank}'s region {remote.region_id} of {remote.length} bytes; "
            "nothing was sent"
        )
    if local.descriptor.kind != remote.kind:
        raise InvalidArgumentError(
            f"transfer entry {index}: local memory is {local.descriptor.kind} but the "
            f"remote region is {remote.kind}; one batch moves one kind of memory"
        )
    return local, loff, remote, roff, length
