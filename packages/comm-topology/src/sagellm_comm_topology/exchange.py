"""Every rank's bytes to every rank, through any backend's ``all_gather`` (lengths first, then padded payloads)."""

from __future__ import annotations

import json
import zlib
from typing import Any

import torch

from sagellm_comm.backend import CommBackend
from sagellm_comm.errors import BackendNotSupportedError

__all__ = ["all_gather_bytes", "all_gather_json"]


def _dtypes(backend: CommBackend) -> tuple[torch.dtype, torch.dtype]:
    """(dtype for the lengths, dtype for the payload bytes) among those the backend declares."""
    caps = backend.capabilities
    if not caps.supports_op("all_gather"):
        raise BackendNotSupportedError(
            f"{backend.name}: the topology exchange needs all_gather, which this backend does not declare"
        )
    counts = [dt for dt in (torch.int64, torch.int32, torch.float32) if dt in caps.dtypes]
    if not counts:
        raise BackendNotSupportedError(f"{backend.name}: no int64/int32/float32 dtype for the topology exchange")
    return counts[0], torch.uint8 if torch.uint8 in caps.dtypes else counts[0]


def all_gather_bytes(backend: CommBackend, payload: bytes, group: Any = None) -> list[bytes]:
    """Collective: every rank of ``group`` calls it; returns every rank's payload in rank order."""
    len_dt, byte_dt = _dtypes(backend)
    dev = backend.device
    lengths = [
        int(t.item()) for t in backend.all_gather(torch.tensor([len(payload)], dtype=len_dt, device=dev), group=group)
    ]
    buf = torch.zeros(max(max(lengths), 1), dtype=byte_dt, device=dev)
    if payload:
        buf[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(byte_dt)
    out = backend.all_gather(buf, group=group)
    return [t[:n].cpu().to(torch.uint8).numpy().tobytes() for t, n in zip(out, lengths, strict=True)]


def all_gather_json(backend: CommBackend, obj: Any, group: Any = None) -> list[Any]:
    """``all_gather_bytes`` of compressed JSON."""
    blob = zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), 6)
    return [json.loads(zlib.decompress(b)) for b in all_gather_bytes(backend, blob, group)]
