"""Two-sided send/recv on the one-sided engine: the receiver reads (the rendezvous protocol of NIXL users such as
vLLM's disaggregated prefill).

1. ``send`` registers the tensor and notifies the receiver: ``rts`` with the group, tag, dtype, shape, size and the
   region's descriptor.
2. The receiver matches ``rts`` messages to posted receives in order per (peer, group, tag). A receive whose dtype
   or byte size differs from the message is refused on both sides (``COMM_RANK_MISMATCH``) before any byte moves.
   Otherwise it registers its buffer, READs the sender's region into it, and answers ``ack`` once the bytes landed.
3. The sender's op completes on ``ack`` and its registration is released.

Everything runs on the engine's progress thread, so async ops progress while the caller does other work. Every op
has a deadline (the group's timeout): a peer that never answers gives ``COMM_TIMEOUT`` naming it, a peer whose
memory vanished mid-read gives ``COMM_P2P_FAILED``.
"""

from __future__ import annotations

import collections
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from sagellm_comm.errors import (
    CommError,
    CommTimeoutError,
    GroupInvalidError,
    RankMismatchError,
)
from sagellm_comm.work import Work
from sagellm_comm_rdma.engine import CONTROL, TransferEngine, TransferHandle
from sagellm_comm_rdma.regions import MemoryRegion, RegionDescriptor

__all__ = ["P2PProtocol", "P2PWork"]


@dataclass(eq=False)
class _Op:
    kind: str  # "send" | "recv"
    peer: int  # global rank
    group: str
    tag: int
    tensor: torch.Tensor  # what the user passed
    deadline: float
    op_id: int = 0
    staging: torch.Tensor | None = None  # contiguous bytes actually registered (send) / read into (recv)
    region: MemoryRegion | None = None
    transfer: TransferHandle | None = None
    done: threading.Event = field(default_factory=threading.Event)
    error: CommError | None = None


def _dtype_name(dt: torch.dtype) -> str:
    return str(dt).removeprefix("torch.")


class P2PProtocol:
    """The send/recv protocol of one backend instance over its ``TransferEngine``."""

    def __init__(self, engine: TransferEngine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._sends: dict[int, _Op] = {}  # op id -> send waiting for its ack
        self._posted: dict[tuple[int, str, int], collections.deque[_Op]] = collections.defaultdict(collections.deque)
        self._arrived: dict[tuple[int, str, int], collections.deque[dict[str, Any]]] = collections.defaultdict(
            collections.deque
        )
        self._reading: list[tuple[_Op, dict[str, Any]]] = []
        self._closed = False
        engine.add_poller(self._poll, self._on_control, self.close)

    # ------------------------------------------------------------------------------------------- posting
    def post(self, kind: str, tensor: torch.Tensor, peer: int, group: str, tag: int, timeout_s: float) -> _Op:
        if self._closed:
            raise GroupInvalidError("rdma: the backend was destroyed")
        op = _Op(kind, peer, group, tag, tensor, time.monotonic() + timeout_s)
        if kind == "send":
            self._start_send(op)
        else:
            with self._lock:
                self._posted[(peer, group, tag)].append(op)
        self.engine.kick()
        return op

    def _start_send(self, op: _Op) -> None:
        t = op.tensor
        staging = t if t.is_contiguous() else t.contiguous()
        flat = staging.reshape(-1).view(torch.uint8) if staging.numel() else staging
        header: dict[str, Any] = {
            "k": "rts",
            "g": op.group,
            "t": op.tag,
            "dt": _dtype_name(t.dtype),
            "n": t.numel() * t.element_size(),
            "shape": list(t.shape),
        }
        if header["n"]:
            op.staging = staging
            op.region = self.engine.register_internal(flat)
            header["d"] = op.region.descriptor.to_dict()
        with self._lock:
            op.op_id = next(self._ids)
            self._sends[op.op_id] = op
        header["id"] = op.op_id
        try:
            self.engine.send_control(op.peer, CONTROL + json.dumps(header).encode())
        except CommError as exc:
            with self._lock:
                self._sends.pop(op.op_id, None)
            self._release(op)
            raise exc

    # ------------------------------------------------------------------------------------------- progress
    def _on_control(self, peer: int, raw: bytes) -> None:
        msg = json.loads(raw)
        kind = msg.get("k")
        if kind == "rts":
            with self._lock:
                self._arrived[(peer, msg["g"], int(msg["t"]))].append(msg)
        elif kind in ("ack", "nak"):
            with self._lock:
                op = self._sends.pop(int(msg["id"]), None)
            if op is None:
                return
            self._release(op)
            if kind == "nak":
                self._fail(op, RankMismatchError(f"rdma send to rank {op.peer} (tag {op.tag}): {msg['why']}"))
            else:
                op.done.set()

    def _poll(self) -> bool:
        """Match arrived messages to posted receives, drive reads in flight, expire deadlines; True if busy."""
        self._match()
        still = []
        for op, msg in self._reading:
            try:
                finished = op.transfer.poll() if op.transfer is not None else True
            except CommError as exc:
                self._release(op)
                self._fail(op, exc)
                continue
            if not finished:
                still.append((op, msg))
                continue
            self._release(op)
            if op.staging is not None and op.staging is not op.tensor:
                op.tensor.copy_(op.staging.view(op.tensor.dtype).reshape(op.tensor.shape))
            self._answer(op.peer, {"k": "ack", "id": msg["id"]})
            op.done.set()
        self._reading = still
        self._expire()
        with self._lock:
            pending = bool(self._sends) or any(self._posted.values())
        return pending or bool(self._reading)

    def _match(self) -> None:
        while True:
            # a peer whose view is due for a reload gets no new reads until its reads in flight are done
            draining = {op.peer for op, _ in self._reading if self.engine.reload_due(op.peer)}
            with self._lock:
                pair = None
                for key, ops in self._posted.items():
                    msgs = self._arrived.get(key)
                    if ops and msgs and key[0] not in draining:
                        pair = (ops.popleft(), msgs.popleft())
                        break
            if pair is None:
                return
            self._start_read(*pair)

    def _start_read(self, op: _Op, msg: dict[str, Any]) -> None:
        t = op.tensor
        want = (_dtype_name(t.dtype), t.numel() * t.element_size())
        got = (msg["dt"], int(msg["n"]))
        if want != got:
            why = (
                f"the message is {got[1]} bytes of {got[0]} (shape {msg['shape']}) but the receive posted "
                f"{want[1]} bytes of {want[0]} (shape {list(t.shape)}); post a matching buffer"
            )
            self._answer(op.peer, {"k": "nak", "id": msg["id"], "why": why})
            self._fail(op, RankMismatchError(f"rdma recv from rank {op.peer} (tag {op.tag}): {why}"))
            return
        if not got[1]:
            self._answer(op.peer, {"k": "ack", "id": msg["id"]})
            op.done.set()
            return
        try:
            op.staging = t if t.is_contiguous() else torch.empty(t.shape, dtype=t.dtype)
            op.region = self.engine.register_internal(op.staging.reshape(-1).view(torch.uint8))
            remote = RegionDescriptor.from_dict(msg["d"])
            op.transfer = self.engine._post("READ", [(op.region, 0, remote, 0, got[1])], None, internal=True)
        except CommError as exc:
            self._release(op)
            self._fail(op, exc)
            return
        self._reading.append((op, msg))

    def _answer(self, peer: int, msg: dict[str, Any]) -> None:
        try:
            self.engine.send_control(peer, CONTROL + json.dumps(msg).encode())
        except CommError:
            pass  # the sender is gone: its own deadline reports it

    def _expire(self) -> None:
        now = time.monotonic()
        expired: list[tuple[_Op, str]] = []
        with self._lock:
            for op_id, op in list(self._sends.items()):
                if now >= op.deadline:
                    del self._sends[op_id]
                    expired.append((op, "did not receive it (no matching recv, or it is stuck or gone)"))
            for ops in self._posted.values():
                for op in list(ops):
                    if now >= op.deadline:
                        ops.remove(op)
                        expired.append((op, "did not send a matching message (no send, or it is stuck or gone)"))
        for op, why in expired:
            self._release(op)
            self._fail(
                op,
                CommTimeoutError(
                    f"rdma {op.kind} with rank {op.peer} (tag {op.tag}) timed out: rank "
                    f"{op.peer} {why}. Destroy the backend and initialize again",
                    retryable=False,
                ),
            )

    def _release(self, op: _Op) -> None:
        region, op.region = op.region, None
        if region is not None and region.registered:
            try:
                self.engine.deregister(region)
            except CommError:
                pass

    @staticmethod
    def _fail(op: _Op, error: CommError) -> None:
        op.error = error
        op.done.set()

    # ------------------------------------------------------------------------------------------- waiting
    def wait(self, op: _Op, timeout: float | None) -> bool:
        if not op.done.wait(timeout):
            return False
        if op.error is not None:
            raise op.error
        return True

    def close(self) -> None:
        """Fail everything still pending (the backend is being destroyed)."""
        self._closed = True
        with self._lock:
            ops = list(self._sends.values()) + [op for q in self._posted.values() for op in q]
            ops += [op for op, _ in self._reading]
            self._sends.clear()
            self._posted.clear()
            self._reading = []
        for op in ops:
            self._release(op)
            self._fail(op, GroupInvalidError(f"rdma {op.kind} with rank {op.peer}: the backend was destroyed"))


class P2PWork(Work):
    """The handle of an rdma isend/irecv."""

    def __init__(self, op_name: str, protocol: P2PProtocol, op: _Op) -> None:
        super().__init__(op_name)
        self._protocol = protocol
        self._op = op

    def is_completed(self) -> bool:
        return self._op.done.is_set()

    def _wait(self, timeout: float | None) -> bool:
        return self._protocol.wait(self._op, timeout)
