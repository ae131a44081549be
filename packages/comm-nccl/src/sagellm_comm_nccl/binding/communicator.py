"""``NcclCommunicator``: one NCCL communicator driven through ctypes, on torch tensors and CUDA streams.

This is the direct path (the approach of vLLM's pynccl): every call is exactly one NCCL launch (or one
``ncclGroupStart/End`` of launches) on a CUDA stream, with no process-group bookkeeping, so it can be captured in a
CUDA graph and replayed.

Stream semantics: with ``stream=None`` an op is enqueued on the caller's *current* stream, after whatever was
queued there before; the result is ready for work queued on that stream afterwards (the CPU is not blocked). With an
explicit ``stream`` other than the current one, that stream first waits for the current stream (so the op still
sees the caller's earlier writes) and the tensors are recorded on it for the caching allocator; the caller makes its
own stream wait for ``stream`` before reading the result.

Needs only torch and ctypes (not sagellm_comm), so it runs under any Python torch runs on.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from sagellm_comm_nccl.binding.api import NCCL_UNIQUE_ID_BYTES, DataType, RedOp, ncclComm_t, ncclUniqueId
from sagellm_comm_nccl.binding.library import NcclError, NcclLibrary

__all__ = ["DTYPES", "NcclCommunicator", "NcclTimeout", "reduce_op_code"]

DTYPES: dict[torch.dtype, int] = {
    torch.int8: DataType.INT8,
    torch.uint8: DataType.UINT8,
    torch.bool: DataType.UINT8,  # one byte per element, as torch's own NCCL process group sends it
    torch.int32: DataType.INT32,
    torch.int64: DataType.INT64,
    torch.float16: DataType.FLOAT16,
    torch.float32: DataType.FLOAT32,
    torch.float64: DataType.FLOAT64,
    torch.bfloat16: DataType.BFLOAT16,
}
_REDOPS = {
    "sum": RedOp.SUM,
    "prod": RedOp.PROD,
    "product": RedOp.PROD,
    "max": RedOp.MAX,
    "min": RedOp.MIN,
    "avg": RedOp.AVG,
}


class NcclTimeout(TimeoutError):
    """A bounded wait (communicator creation, draining before destroy) ran out."""


def reduce_op_code(op: Any) -> int:
    """``"sum"``, a ``torch.distributed.ReduceOp`` or any enum whose string ``value`` or ``name`` is one of sum,
    prod, max, min, avg."""
    value = getattr(op, "value", None)
    key = (value if isinstance(value, str) else str(getattr(op, "name", op))).lower().rsplit(".", 1)[-1]
    if key not in _REDOPS:
        raise ValueError(f"NCCL reduces with sum, prod, max, min or avg; got {op!r}")
    return _REDOPS[key]


class NcclCommunicator:
    """A communicator of ``world_size`` ranks on ``device``, formed from a unique id every rank received.

    ``timeout_s`` bounds the creation (every rank must call it with the same id); ``destroy`` drains this
    communicator's streams for at most ``drain_s`` and aborts it past that.
    """

    def __init__(
        self,
        library: NcclLibrary,
        unique_id: bytes,
        rank: int,
        world_size: int,
        device: torch.device | int | str,
        *,
        timeout_s: float = 300.0,
    ) -> None:
        if len(unique_id) != NCCL_UNIQUE_ID_BYTES:
            raise ValueError(f"an NCCL unique id is {NCCL_UNIQUE_ID_BYTES} bytes, got {len(unique_id)}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is out of range for world size {world_size}")
        self.library, self.rank, self.world_size = library, rank, world_size
        self.device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self._comm = ncclComm_t()
        self._closed = False
        self._create(unique_id, timeout_s)

    @classmethod
    def single(cls, library: NcclLibrary, device: torch.device | int | str = 0) -> NcclCommunicator:
        """A world-size-1 communicator (self-tests, the GPU check)."""
        return cls(library, library.unique_id(), 0, 1, device)

    # ------------------------------------------------------------------------------------------- lifecycle
    def _create(self, unique_id: bytes, timeout_s: float) -> None:
        uid = ncclUniqueId()
        ctypes.memmove(uid.internal, unique_id, NCCL_UNIQUE_ID_BYTES)
        outcome: list[BaseException | None] = []

        def init() -> None:  # on its own thread, so that a peer that never joins cannot hang the caller
            try:
                torch.cuda.set_device(self.device)
                self.library.call("ncclCommInitRank", ctypes.byref(self._comm), self.world_size, uid, self.rank)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=init, name=f"ncclCommInitRank-{self.rank}", daemon=True)
        thread.start()
        thread.join(timeout_s)
        if thread.is_alive():
            self._closed = True
            raise NcclTimeout(
                f"ncclCommInitRank (rank {self.rank} of {self.world_size} on {self.device}) did not finish within "
                f"{timeout_s:.0f}s: a rank never joined or the network between ranks is blocked (NCCL_SOCKET_IFNAME "
                "selects the interface; NCCL_DEBUG=INFO shows what NCCL tried)"
            )
        if outcome[0] is not None:
            self._closed = True
            raise outcome[0]

    @property
    def handle(self) -> int:
        return int(self._comm.value or 0)

    def check_async_error(self) -> None:
        """Raise ``NcclError`` if NCCL recorded an asynchronous failure (a peer died, a network error)."""
        if self._closed:
            return
        state = ctypes.c_int()
        self.library.call("ncclCommGetAsyncError", self._comm, ctypes.byref(state), comm=self._comm)
        if state.value not in (0, 7):  # ncclSuccess, ncclInProgress
            raise NcclError(
                "ncclCommGetAsyncError",
                state.value,
                self.library.error_string(state.value),
                self.library.last_error(self._comm),
            )

    def destroy(self, drain_s: float = 30.0) -> None:
        """Release the communicator: wait (bounded) for its queued work, then ncclCommDestroy; if the work does
        not finish in ``drain_s`` (a peer is gone), ncclCommAbort instead. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        drained = self._drain(drain_s)
        self.library.call("ncclCommDestroy" if drained else "ncclCommAbort", self._comm)

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            self.library.call("ncclCommAbort", self._comm)

    def _drain(self, timeout_s: float) -> bool:
        """Wait for the device to finish what is queued (this communicator's ops among it), at most ``timeout_s``."""
        done = threading.Event()

        def sync() -> None:
            try:
                torch.cuda.synchronize(self.device)
            finally:
                done.set()

        threading.Thread(target=sync, name="nccl-drain", daemon=True).start()
        return done.wait(timeout_s)

    # ----------------------------------------------------------------------------------------------- helpers
    def _check(self, t: torch.Tensor, what: str) -> None:
        if self._closed:
            raise RuntimeError("this NCCL communicator was destroyed")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
        if t.device != self.device:
            raise ValueError(f"{what} is on {t.device}; this communicator runs on {self.device}")
        if not t.is_contiguous():
            raise ValueError(f"{what} must be contiguous (pass tensor.contiguous() and copy the result back)")
        if t.dtype not in DTYPES:
            raise TypeError(
                f"{what}: NCCL has no type for {t.dtype}; supported: "
                f"{', '.join(str(d).removeprefix('torch.') for d in DTYPES)}"
            )

    def _dtype(self, t: torch.Tensor, op: Any = None) -> int:
        if op is not None and t.dtype is torch.bool:
            raise TypeError("NCCL does not reduce bool tensors; reduce uint8 (max for or, min for and)")
        return DTYPES[t.dtype]

    @contextlib.contextmanager
    def _stream(self, stream: torch.cuda.Stream | None, tensors: Sequence[torch.Tensor]) -> Iterator[int]:
        current = torch.cuda.current_stream(self.device)
        if stream is None or stream == current:
            ptr = current.cuda_stream
        else:
            stream.wait_stream(current)  # the op sees everything queued before it on the caller's stream
            for t in tensors:
                t.record_stream(stream)
            ptr = stream.cuda_stream
        yield ptr

    @staticmethod
    def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
        return ctypes.c_void_p(t.data_ptr())

    def _call(self, name: str, *args: Any) -> None:
        with torch.cuda.device(self.device):
            self.library.call(name, *args, comm=self._comm)

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """``ncclGroupStart``/``ncclGroupEnd`` around several calls (fused sends and receives)."""
        self.library.call("ncclGroupStart")
        try:
            yield
        finally:
            self.library.call("ncclGroupEnd", comm=self._comm)

    # ----------------------------------------------------------------------------------------- collectives
    def all_reduce(
        self,
        tensor: torch.Tensor,
        op: Any = "sum",
        *,
        out: torch.Tensor | None = None,
        stream: torch.cuda.Stream | None = None,
    ) -> torch.Tensor:
        """Reduce ``tensor`` across ranks into ``out`` (default: in place); returns the result tensor."""
        out = tensor if out is None else out
        self._check(tensor, "tensor")
        self._check(out, "out")
        self._same(tensor, out, 1, "all_reduce")
        dtype, red = self._dtype(tensor, op), reduce_op_code(op)
        with self._stream(stream, (tensor, out)) as s:
            self._call("ncclAllReduce", self._ptr(tensor), self._ptr(out), tensor.numel(), dtype, red, self._comm, s)
        return out

    def all_gather(
        self, output: torch.Tensor, tensor: torch.Tensor, *, stream: torch.cuda.Stream | None = None
    ) -> torch.Tensor:
        """Every rank's ``tensor`` into ``output`` (``world_size`` times as many elements, rank-major)."""
        self._check(tensor, "tensor")
        self._check(output, "output")
        self._same(output, tensor, self.world_size, "all_gather")
        with self._stream(stream, (tensor, output)) as s:
            self._call(
                "ncclAllGather",
                self._ptr(tensor),
                self._ptr(output),
                tensor.numel(),
                self._dtype(tensor),
                self._comm,
                s,
            )
        return output

    def reduce_scatter(
        self, output: torch.Tensor, tensor: torch.Tensor, op: Any = "sum", *, stream: torch.cuda.Stream | None = None
    ) -> torch.Tensor:
        """Reduce ``tensor`` (``world_size`` chunks) across ranks; chunk ``rank`` lands in ``output``."""
        self._check(tensor, "tensor")
        self._check(output, "output")
        self._same(tensor, output, self.world_size, "reduce_scatter")
        dtype, red = self._dtype(tensor, op), reduce_op_code(op)
        with self._stream(stream, (tensor, output)) as s:
            self._call(
                "ncclReduceScatter", self._ptr(tensor), self._ptr(output), output.numel(), dtype, red, self._comm, s
            )
        return output

    def broadcast(
        self,
        tensor: torch.Tensor,
        root: int = 0,
        *,
        out: torch.Tensor | None = None,
        stream: torch.cuda.Stream | None = None,
    ) -> torch.Tensor:
        """``root``'s ``tensor`` into every rank's ``out`` (default: in place); returns ``out``."""
        out = tensor if out is None else out
        self._check(tensor, "tensor")
        self._check(out, "out")
        self._same(tensor, out, 1, "broadcast")
        self._peer(root, "root", allow_self=True)
        with self._stream(stream, (tensor, out)) as s:
            self._call(
                "ncclBroadcast",
                self._ptr(tensor),
                self._ptr(out),
                tensor.numel(),
                self._dtype(tensor),
                root,
                self._comm,
                s,
            )
        return out

    def reduce(
        self, tensor: torch.Tensor, root: int = 0, op: Any = "sum", *, stream: torch.cuda.Stream | None = None
    ) -> torch.Tensor:
        """Reduce into ``root``'s ``tensor`` (other ranks' tensors are left unchanged)."""
        self._check(tensor, "tensor")
        self._peer(root, "root", allow_self=True)
        dtype, red = self._dtype(tensor, op), reduce_op_code(op)
        with self._stream(stream, (tensor,)) as s:
            recv = self._ptr(tensor) if self.rank == root else ctypes.c_void_p(None)
            self._call("ncclReduce", self._ptr(tensor), recv, tensor.numel(), dtype, red, root, self._comm, s)
        return tensor

    # -------------------------------------------------------------------------------------- point to point
    def send(self, tensor: torch.Tensor, peer: int, *, stream: torch.cuda.Stream | None = None) -> None:
        self._check(tensor, "tensor")
        self._peer(peer, "peer", allow_self=False)
        with self._stream(stream, (tensor,)) as s:
            self._call("ncclSend", self._ptr(tensor), tensor.numel(), self._dtype(tensor), peer, self._comm, s)

    def recv(self, tensor: torch.Tensor, peer: int, *, stream: torch.cuda.Stream | None = None) -> torch.Tensor:
        self._check(tensor, "tensor")
        self._peer(peer, "peer", allow_self=False)
        with self._stream(stream, (tensor,)) as s:
            self._call("ncclRecv", self._ptr(tensor), tensor.numel(), self._dtype(tensor), peer, self._comm, s)
        return tensor

    def exchange(
        self,
        sends: Sequence[tuple[torch.Tensor | None, int]],
        recvs: Sequence[tuple[torch.Tensor | None, int]],
        *,
        stream: torch.cuda.Stream | None = None,
    ) -> None:
        """One fused group of sends ``(tensor, peer)`` and receives ``(tensor, peer)`` (all-to-all, gather,
        scatter, a ring step); ``None`` tensors are skipped. A pair naming this rank copies locally."""
        tensors = [t for t, _ in (*sends, *recvs) if t is not None]
        for t in tensors:
            self._check(t, "tensor")
        local = {p: t for t, p in sends if t is not None and p == self.rank}
        with self._stream(stream, tensors) as s:
            with self.group():
                for t, peer in sends:
                    if t is not None and peer != self.rank:
                        self._peer(peer, "peer", allow_self=False)
                        self._call("ncclSend", self._ptr(t), t.numel(), self._dtype(t), peer, self._comm, s)
                for t, peer in recvs:
                    if t is not None and peer != self.rank:
                        self._peer(peer, "peer", allow_self=False)
                        self._call("ncclRecv", self._ptr(t), t.numel(), self._dtype(t), peer, self._comm, s)
            for t, peer in recvs:
                if t is not None and peer == self.rank:
                    if self.rank not in local:
                        raise ValueError("a receive from this rank needs a send to this rank in the same exchange")
                    with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                        t.copy_(local[self.rank])

    def all_to_all_single(
        self, output: torch.Tensor, tensor: torch.Tensor, *, stream: torch.cuda.Stream | None = None
    ) -> torch.Tensor:
        """Chunk ``r`` of ``tensor`` goes to rank ``r``; chunk ``r`` of ``output`` comes from rank ``r``."""
        self._check(tensor, "tensor")
        self._check(output, "output")
        self._same(tensor, output, 1, "all_to_all_single")
        if tensor.numel() % self.world_size:
            raise ValueError(
                f"all_to_all_single: {tensor.numel()} elements do not split into {self.world_size} equal chunks"
            )
        ins, outs = tensor.view(-1).chunk(self.world_size), output.view(-1).chunk(self.world_size)
        self.exchange(
            [(ins[r], r) for r in range(self.world_size)], [(outs[r], r) for r in range(self.world_size)], stream=stream
        )
        return output

    # ------------------------------------------------------------------------------------------------ checks
    @staticmethod
    def _same(big: torch.Tensor, small: torch.Tensor, n: int, op: str) -> None:
        if big.dtype != small.dtype or big.numel() != n * small.numel():
            raise ValueError(
                f"{op}: expected {n} x {small.numel()} elements of {small.dtype}, got {big.numel()} of {big.dtype}"
            )

    def _peer(self, peer: int, what: str, *, allow_self: bool) -> None:
        if isinstance(peer, bool) or not isinstance(peer, int) or not 0 <= peer < self.world_size:
            raise ValueError(f"{what} must be a rank in 0..{self.world_size - 1}, got {peer!r}")
        if not allow_self and peer == self.rank:
            raise ValueError(f"{what} {peer} is this rank; NCCL send/recv need another rank")

    def __repr__(self) -> str:
        state = "destroyed" if self._closed else f"rank {self.rank}/{self.world_size} on {self.device}"
        return f"<NcclCommunicator {self.library.flavor} {self.library.version_string} {state}>"
