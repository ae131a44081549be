"""Point-to-point with a header: every message carries its dtype and size, so a mismatched receive fails.

Gloo moves raw bytes. A receive into a tensor of another dtype gets the sender's bytes reinterpreted, one larger than
the message gets a partly filled tensor, and both come back with no error. A smaller one aborts the whole process
(``gloo::EnforceNotMet``: the engine refuses a message larger than the posted buffer).

Framing: the first engine message of every send is a *frame* of at most ``HEADER + FRAME`` bytes: a header
(magic, dtype, numel), then the first ``FRAME`` bytes of the payload. The receiver always posts a buffer of that
full size, and the engine accepts a shorter message, so the first frame can never abort the process. Whatever is
longer than ``FRAME`` follows as a second message. The receiver posts that one once the header told it the size:
into the caller's tensor if the header matches, into a scratch buffer if not. Either way the sender completes, and
a mismatch raises ``COMM_RANK_MISMATCH`` saying what was sent and what was expected.

Messages up to ``FRAME`` cost one engine message and two small copies. A larger one pays one extra round trip
before its bulk.

The receives of one (group, peer, tag) run in call order on a thread of their own, because a receive may take two
engine receives in a row. That thread is also how ``irecv`` progresses without the caller.
"""

from __future__ import annotations

import struct
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
import torch.distributed as dist

from sagellm_comm.errors import RankMismatchError
from sagellm_comm.ops import WIRE_DTYPES

__all__ = ["HeaderedP2P"]

MAGIC = 0x5347_5032  # "SGP2"
HEADER = 32  # bytes: three int64 (magic, dtype, numel), padded
FRAME = 64 << 10  # payload bytes carried by the first message
_DTYPES = WIRE_DTYPES
_CODES = {d: i for i, d in enumerate(_DTYPES)}
_SIZES = [torch.empty(0, dtype=d).element_size() for d in _DTYPES]
_HEAD = struct.Struct("<qqq")  # magic, dtype, numel
_MAX_BYTES = 1 << 47  # more than any host can map: a header announcing more is corrupt


def _as_bytes(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).view(torch.uint8)


def _name(code: int) -> str:
    return str(_DTYPES[code]).removeprefix("torch.") if 0 <= code < len(_DTYPES) else f"dtype #{code}"


class HeaderedP2P:
    """Headered send/recv over one torch.distributed backend; one instance per CommBackend."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lanes: dict[tuple[int, int, int], ThreadPoolExecutor] = {}
        self._pending: dict[tuple[int, int, int], int] = {}

    # --------------------------------------------------------------------------------------------- sending
    @staticmethod
    def isend(tensor: torch.Tensor, peer: int, pg: Any, tag: int) -> list[Any]:
        """The first frame (header + up to FRAME payload bytes), then the rest if any, on (peer, tag); the engine
        keeps their order. Returns the engine works."""
        data = _as_bytes(tensor.contiguous())
        k = min(FRAME, data.numel())
        raw = bytearray(HEADER + k)
        _HEAD.pack_into(raw, 0, MAGIC, _CODES.get(tensor.dtype, -1), tensor.numel())
        frame = torch.frombuffer(raw, dtype=torch.uint8)
        if k:
            frame[HEADER:].copy_(data[:k])
        works = [dist.isend(frame, dst=peer, group=pg, tag=tag)]
        if data.numel() > k:
            works.append(dist.isend(data[k:], dst=peer, group=pg, tag=tag))
        return works

    # ------------------------------------------------------------------------------------------- receiving
    def recv(self, tensor: torch.Tensor, peer: int, pg: Any, tag: int, who: str) -> None:
        """Blocking receive, in order after this lane's pending ``irecv``s."""
        key = (id(pg), peer, tag)
        with self._lock:
            inline = not self._pending.get(key)
        if inline:
            self._receive(tensor, peer, pg, tag, who)
        else:
            self.irecv(tensor, peer, pg, tag, who).result()

    def irecv(self, tensor: torch.Tensor, peer: int, pg: Any, tag: int, who: str) -> Future[Any]:
        key = (id(pg), peer, tag)
        with self._lock:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = ThreadPoolExecutor(1, thread_name_prefix=f"sagellm-recv-{peer}-{tag}")
            self._pending[key] = self._pending.get(key, 0) + 1

        def job() -> None:
            try:
                self._receive(tensor, peer, pg, tag, who)
            finally:
                with self._lock:
                    self._pending[key] -= 1

        return lane.submit(job)

    @staticmethod
    def _receive(tensor: torch.Tensor, peer: int, pg: Any, tag: int, who: str) -> None:
        raw = bytearray(HEADER + FRAME)
        frame = torch.frombuffer(raw, dtype=torch.uint8)
        dist.recv(frame, src=peer, group=pg, tag=tag)
        magic, code, numel = _HEAD.unpack_from(raw)
        if magic != MAGIC:
            raise RankMismatchError(
                f"recv from {who} (tag {tag}): the message has no sagellm-comm header; the peer "
                "sent with another backend or bypassed it"
            )
        if not 0 <= code < len(_DTYPES) or not 0 <= numel * _SIZES[code] <= _MAX_BYTES:
            raise RankMismatchError(
                f"recv from {who} (tag {tag}): corrupt sagellm-comm header (dtype code {code}, "
                f"{numel} elements); the message was dropped"
            )
        nbytes = numel * _SIZES[code]
        k = min(FRAME, nbytes)
        if code == _CODES.get(tensor.dtype, -1) and numel == tensor.numel():
            buf = tensor if tensor.is_contiguous() else torch.empty_like(tensor, memory_format=torch.contiguous_format)
            data = _as_bytes(buf)
            if k:
                data[:k].copy_(frame[HEADER : HEADER + k])
            if nbytes > k:
                dist.recv(data[k:], src=peer, group=pg, tag=tag)
            if buf is not tensor:
                tensor.copy_(buf)
            return
        if nbytes > k:  # drain the rest so the sender completes
            try:
                scratch = torch.empty(nbytes - k, dtype=torch.uint8)
            except (RuntimeError, MemoryError) as exc:
                raise RankMismatchError(
                    f"recv from {who} (tag {tag}): it sent {_name(code)} x{numel} ({nbytes} bytes), more than this "
                    f"host can buffer to drain, into {str(tensor.dtype).removeprefix('torch.')} x{tensor.numel()}; "
                    "the sender stays blocked. Post a receive buffer of the sender's dtype and size."
                ) from exc
            dist.recv(scratch, src=peer, group=pg, tag=tag)
        raise RankMismatchError(
            f"recv from {who} (tag {tag}): it sent {_name(code)} x{numel}, this rank receives into "
            f"{str(tensor.dtype).removeprefix('torch.')} x{tensor.numel()}; the message was dropped. Post a receive "
            "buffer of the sender's dtype and size."
        )

    def close(self) -> None:
        with self._lock:
            lanes, self._lanes, self._pending = list(self._lanes.values()), {}, {}
        for lane in lanes:
            lane.shutdown(wait=False, cancel_futures=True)
