"""Point-to-point through the region: one FIFO channel per ordered pair of ranks.

Channel ``src -> dst`` has two mailboxes (sub-buffers) and two counters: ``sent`` (chunks written, by ``src``) and
``acked`` (chunks consumed, by ``dst``). ``src`` may write chunk ``k`` once ``acked >= k - 1`` (at most two chunks
in flight), ``dst`` may read chunk ``k`` once ``sent > k``. A message is as many chunks as it needs; each chunk's
header carries the message length and tag, so a receive posted with the wrong size fails with both sizes named.
Matching follows MPI: a message goes to the earliest posted receive from that peer with its tag; a message nobody
has asked for yet is received into a buffer of its own and handed to the first matching receive posted later.

Progress is non-blocking steps over every pending operation, so a rank that sends a large message while it
receives one (a ring exchange) moves both along. Blocking calls drive progress themselves; ``isend``/``irecv``
are also driven by a background thread while any is pending. After a step that made no progress the driver sleeps
on its doorbell word, which every peer bumps (with a value unique to that peer and write) after it writes a chunk
for us or frees a mailbox we wait for.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from sagellm_comm.errors import CommTimeoutError, P2PFailedError
from sagellm_comm.ops import WIRE_DTYPES
from sagellm_comm.work import Work
from sagellm_comm_cxl_ub import futex
from sagellm_comm_cxl_ub.layout import Layout
from sagellm_comm_cxl_ub.ordering import acquire_fence, release_fence
from sagellm_comm_cxl_ub.sync import LIVENESS_EVERY_S, SLEEP_SLICE_S, _as_int32, reached

__all__ = ["P2PEngine", "P2PWork"]

_HDR = 64
_DTYPE_CODES = {d: i + 1 for i, d in enumerate(WIRE_DTYPES)}  # in chunk headers; 0: not a wire dtype


def _dtype_name(code: int) -> str:
    return str(WIRE_DTYPES[code - 1]).removeprefix("torch.") if 0 < code <= len(WIRE_DTYPES) else "bytes"


@dataclass(eq=False)  # an op is itself: comparing fields would compare tensors (list.remove() raised on them)
class _Op:
    kind: str  # "send" | "recv"
    peer: int
    data: torch.Tensor  # contiguous uint8
    back: object = None  # callable copying a receive back into a non-contiguous tensor
    done_bytes: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    tag: int = 0
    dtype: int = 0  # _DTYPE_CODES of the caller's tensor


@dataclass(eq=False)
class _Inbound:
    """The message currently arriving from one peer, and where its bytes go."""

    tag: int
    total: int
    target: torch.Tensor
    op: _Op | None  # None: nobody asked for it yet (or a size mismatch is being drained)
    dtype: int = 0


class P2PEngine:
    def __init__(
        self,
        mapping: object,
        base_tensor: torch.Tensor,
        base_off: int,
        base_addr: int,
        layout: Layout,
        rank: int,
        global_ranks: list[int],
        group_id: str,
        timeout_s: float,
        exited: Callable[[int], bool] | None = None,
    ) -> None:
        self.exited = exited  # whether a peer's process is gone (a receive from a dead rank fails at once)
        self.layout = layout
        self.rank = rank
        self.n = layout.world_size
        self.global_ranks = global_ranks
        self.group_id = group_id
        self.timeout_s = timeout_s
        self.chunk = layout.chunk_bytes

        def word(off: int) -> np.ndarray:
            return np.ndarray((1,), dtype=np.int32, buffer=mapping, offset=base_off + off)  # type: ignore

        n = self.n
        self.sent = {(s, d): word(layout.sent_word(s, d)) for s in range(n) for d in range(n) if s != d}
        self.acked = {(s, d): word(layout.acked_word(s, d)) for s in range(n) for d in range(n) if s != d}
        self.bells = [word(layout.doorbell_word(r)) for r in range(n)]
        self.bell_addrs = [base_addr + layout.doorbell_word(r) for r in range(n)]
        self.box = {}
        for s in range(n):
            for d in range(n):
                if s != d:
                    for w in (0, 1):
                        off = layout.mailbox(s, d, w)
                        hdr = np.ndarray((5,), dtype=np.int64, buffer=mapping, offset=base_off + off)  # type: ignore
                        self.box[(s, d, w)] = (hdr, base_tensor[off + _HDR : off + _HDR + self.chunk])
        # chunks this rank wrote to / read from each peer so far (mirrors of its own counters)
        self.n_sent = dict.fromkeys(range(n), 0)
        self.n_recv = dict.fromkeys(range(n), 0)
        self.queues: dict[tuple[str, int], deque[_Op]] = {}  # sends, per destination, in posting order
        self.posted: dict[int, list[_Op]] = {}  # receives not yet bound to a message, per source
        self.inbound: dict[int, _Inbound] = {}
        self.unexpected: dict[tuple[int, int], deque[tuple[torch.Tensor, int]]] = {}  # (source, tag) -> messages
        self._lock = threading.RLock()
        self._ring_count = 0
        self._thread: threading.Thread | None = None
        self._stop = False
        self._async_pending = 0

    # ------------------------------------------------------------------------------------------------ posting
    def post(self, kind: str, peer: int, tensor: torch.Tensor, background: bool, tag: int = 0) -> _Op:
        if tensor.is_contiguous():  # as_strided: a 0/1-element tensor may keep an odd stride through view(-1)
            data, back = tensor.as_strided((tensor.numel(),), (1,)).view(torch.uint8), None
        elif kind == "send":
            data, back = tensor.contiguous().view(-1).view(torch.uint8), None
        else:
            tmp = tensor.contiguous()
            data, back = tmp.view(-1).view(torch.uint8), (lambda: tensor.copy_(tmp))
        op = _Op(kind, peer, data.reshape(-1), back, tag=tag, dtype=_DTYPE_CODES.get(tensor.dtype, 0))
        with self._lock:
            if kind == "send":
                self.queues.setdefault((kind, peer), deque()).append(op)
            else:
                self.posted.setdefault(peer, []).append(op)
            if background:
                self._async_pending += 1
                self._ensure_thread()
        if background:
            self._ring(self.rank)  # wake our own driver thread
        return op

    def run(self, op: _Op, timeout_s: float | None) -> None:
        """Drive progress until ``op`` finishes; raise its error or a timeout naming the peer."""
        limit = self.timeout_s if timeout_s is None else timeout_s
        now = time.monotonic()
        deadline, next_check = now + limit, now + LIVENESS_EVERY_S
        while not op.done.is_set():
            bell = int(self.bells[self.rank][0])
            if self.progress():
                continue
            if op.done.is_set():
                break
            now = time.monotonic()
            if now > deadline:
                raise self._timeout(op, limit)
            if now >= next_check:
                next_check = now + LIVENESS_EVERY_S
                if self.exited is not None and self.exited(op.peer) and not self.progress() and not op.done.is_set():
                    what = "sent to" if op.kind == "send" else "received from"
                    raise P2PFailedError(
                        f"group {self.group_id}: rank {self.global_ranks[op.peer]} exited before it "
                        f"{'received' if op.kind == 'send' else 'sent'} what rank {self.global_ranks[self.rank]} "
                        f"{what} it ({op.done_bytes} of {op.data.numel()} bytes moved); the group cannot continue: "
                        "destroy() the backend and start the job again",
                        retryable=False,
                    )
            futex.wait(self.bell_addrs[self.rank], bell, SLEEP_SLICE_S)
        if op.error is not None:
            raise op.error

    # ----------------------------------------------------------------------------------------------- progress
    def progress(self) -> bool:
        moved = False
        with self._lock:
            for key, q in list(self.queues.items()):
                while q:
                    op = q[0]
                    try:
                        advanced = self._send_step(op)
                    except BaseException as exc:
                        op.error, advanced = exc, True
                        op.done_bytes = op.data.numel()
                    if not advanced:
                        break
                    moved = True
                    if op.done_bytes >= op.data.numel():
                        q.popleft()
                        op.done.set()
                if not q:
                    del self.queues[key]
            for peer in range(self.n):
                if peer != self.rank:
                    moved |= self._receive_from(peer)
        return moved

    def _send_step(self, op: _Op) -> bool:
        peer, k = op.peer, self.n_sent[op.peer]
        if k >= 2 and not reached(int(self.acked[(self.rank, peer)][0]), k - 1):
            return False
        acquire_fence()  # the peer's reads of this box happened before its ack
        hdr, box = self.box[(self.rank, peer, k & 1)]
        a = op.done_bytes
        c = min(self.chunk, op.data.numel() - a)
        if c:
            box[:c].copy_(op.data[a : a + c])
        hdr[:] = (op.data.numel(), c, a, op.tag, op.dtype)
        self.n_sent[peer] = k + 1
        release_fence()  # box and header before the count
        self.sent[(self.rank, peer)][0] = _as_int32(k + 1)
        self._ring(peer)
        op.done_bytes = a + c
        return True

    def _receive_from(self, peer: int) -> bool:
        moved = self._match_unexpected(peer)
        while reached(int(self.sent[(peer, self.rank)][0]), self.n_recv[peer] + 1):
            acquire_fence()  # the count before the box and header it announces
            k = self.n_recv[peer]
            hdr, box = self.box[(peer, self.rank, k & 1)]
            total, c, a, tag, dtype = hdr.tolist()
            inbound = self.inbound.get(peer)
            if inbound is None:
                inbound = self.inbound[peer] = self._bind(peer, tag, total, dtype)
            if c:
                inbound.target[a : a + c].copy_(box[:c])  # before the ack: the ack lets the sender reuse the box
            self.n_recv[peer] = k + 1
            release_fence()  # done reading the box before the ack lets the sender reuse it
            self.acked[(peer, self.rank)][0] = _as_int32(k + 1)
            self._ring(peer)
            moved = True
            if a + c >= total:
                del self.inbound[peer]
                if inbound.op is not None:
                    self._finish(inbound.op)
                elif inbound.total >= 0:
                    self.unexpected.setdefault((peer, tag), deque()).append((inbound.target, inbound.dtype))
                    # hand it out now: the next message must not be bound to a receive posted for this one
                    self._match_unexpected(peer)
        return self._match_unexpected(peer) or moved

    def _bind(self, peer: int, tag: int, total: int, dtype: int) -> _Inbound:
        ops = self.posted.get(peer, [])
        for i, op in enumerate(ops):
            if op.tag == tag:
                del ops[i]
                if op.data.numel() == total and op.dtype == dtype:
                    return _Inbound(tag, total, op.data, op, dtype)
                self._fail_size(op, total, dtype)  # drain the message so the channel stays in step
                return _Inbound(tag, -1, torch.empty(total, dtype=torch.uint8), None, dtype)
        return _Inbound(tag, total, torch.empty(total, dtype=torch.uint8), None, dtype)

    def _match_unexpected(self, peer: int) -> bool:
        ops = self.posted.get(peer)
        if not ops or not self.unexpected:
            return False
        moved = False
        for op in list(ops):
            waiting = self.unexpected.get((peer, op.tag))
            if waiting:
                msg, dtype = waiting.popleft()
                ops.remove(op)
                if msg.numel() == op.data.numel() and dtype == op.dtype:
                    op.data.copy_(msg)
                    self._finish(op)
                else:
                    self._fail_size(op, msg.numel(), dtype)
                moved = True
        return moved

    def _finish(self, op: _Op) -> None:
        op.done_bytes = op.data.numel()
        if op.back is not None:
            op.back()  # type: ignore[operator]
        op.done.set()

    def _fail_size(self, op: _Op, total: int, dtype: int) -> None:
        op.error = P2PFailedError(
            f"group {self.group_id}: rank {self.global_ranks[op.peer]} sent {total} bytes of {_dtype_name(dtype)} "
            f"(tag {op.tag}) but rank {self.global_ranks[self.rank]} posted a receive of {op.data.numel()} bytes of "
            f"{_dtype_name(op.dtype)}; sizes and dtypes of matching send/recv must agree",
            retryable=False,
        )
        op.done.set()

    def _ring(self, peer: int) -> None:
        self._ring_count += 1
        self.bells[peer][0] = _as_int32((self._ring_count << 8) | (self.rank & 0xFF))
        futex.wake(self.bell_addrs[peer])

    def _timeout(self, op: _Op, limit: float) -> CommTimeoutError:
        what = "send to" if op.kind == "send" else "receive from"
        return CommTimeoutError(
            f"group {self.group_id}: rank {self.global_ranks[self.rank]} could not {what} rank "
            f"{self.global_ranks[op.peer]} within {limit:.1f}s ({op.done_bytes} of {op.data.numel()} bytes moved); "
            "the peer never posted the matching op or is stuck",
            retryable=True,
        )

    # ------------------------------------------------------------------------------------------ async driver
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._drive, name=f"sagellm-comm-p2p-{self.group_id}", daemon=True)
            self._thread.start()

    def _drive(self) -> None:
        while not self._stop:
            bell = int(self.bells[self.rank][0])
            if self.progress():
                continue
            with self._lock:
                idle = not self.queues and not any(self.posted.values())
            futex.wait(self.bell_addrs[self.rank], bell, 0.05 if idle else SLEEP_SLICE_S)

    def finished_async(self) -> None:
        with self._lock:
            self._async_pending = max(0, self._async_pending - 1)

    def close(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._ring(self.rank)
            self._thread.join(timeout=1.0)
        self.sent = self.acked = {}
        self.bells = []
        self.box = {}


class P2PWork(Work):
    def __init__(self, op_name: str, engine: P2PEngine, op: _Op) -> None:
        super().__init__(op_name)
        self._engine = engine
        self._op = op

    def is_completed(self) -> bool:
        if not self._op.done.is_set():
            self._engine.progress()
        return self._op.done.is_set()

    def _wait(self, timeout: float | None) -> bool:
        try:
            self._engine.run(self._op, timeout)
        except CommTimeoutError:
            if timeout is not None:
                return False
            raise
        return True
