"""``NcclBackend``: the contract on NVIDIA GPUs, through torch.distributed's NCCL process group and a direct path.

- Eager ops run on torch.distributed's NCCL process group (its watchdog, error handling and communication
  streams), one CUDA device per rank (``device_id`` bound at init: LOCAL_RANK, or ``device=``).
- The direct path (``sagellm_comm_nccl.binding``, ctypes over the libnccl torch already loaded) holds one more
  communicator per group. It is what runs inside CUDA graph capture, where the process group's bookkeeping is not
  capturable (vLLM's pynccl reasoning); ``path="direct"`` (or ``SAGELLM_COMM_NCCL_PATH=direct``) sends eager ops
  through it too.

Options of ``init_process_group``/``get_comm_backend``: ``device`` (index or ``"cuda:1"``; default LOCAL_RANK),
``direct`` (True: form the direct communicators and fail if impossible; False: never; default: when the library
loads), ``path`` (``"auto"``: the process group, the direct path under capture; ``"direct"``; ``"process_group"``).
NCCL's own settings (NCCL_SOCKET_IFNAME, NCCL_DEBUG, NCCL_IB_HCA, ...) are read by the library from the environment,
for both paths.

Stream semantics are the contract's (docs/streams.md): a collective follows the work queued before it on the caller's
current stream; ``Work.wait()`` orders the current stream after it; ``Work.synchronize()`` also blocks the CPU.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.capabilities import ALL_OPS, ARITHMETIC_OPS, FLOAT_DTYPES, INT_DTYPES, Capabilities
from sagellm_comm.engines.torch_distributed import TorchDistributedBackend
from sagellm_comm.errors import BackendNotSupportedError, InvalidArgumentError
from sagellm_comm.group import CommGroup
from sagellm_comm.rendezvous import Rendezvous
from sagellm_comm.work import Work
from sagellm_comm_nccl.binding import NcclCommunicator, find_library
from sagellm_comm_nccl.direct import DirectPath, StreamWork
from sagellm_comm_nccl.probes import nccl_available

__all__ = ["NcclBackend"]

log = logging.getLogger(__name__)
PATHS = ("auto", "direct", "process_group")
PATH_ENV = "SAGELLM_COMM_NCCL_PATH"

# NCCL reduces every numeric type with sum/prod/min/max, floats also with avg (ncclAvg, NCCL >= 2.10); it has no
# bitwise reductions (torch's NCCL process group refuses BAND/BOR/BXOR) and bool travels as uint8 but is not reduced.
_NUMERIC = FLOAT_DTYPES | INT_DTYPES
_REDUCE = {**{op: _NUMERIC for op in ARITHMETIC_OPS}, ReduceOp.AVG: FLOAT_DTYPES}


class NcclBackend(TorchDistributedBackend):
    name: ClassVar[str] = "nccl"
    torch_backend: ClassVar[str] = "nccl"
    device_type: ClassVar[str] = "cuda"
    native_avg: ClassVar[bool] = True
    fused_batch_p2p: ClassVar[bool] = True
    library_flavor: ClassVar[str] = "nccl"  # which library the direct path binds (rccl: librccl)
    capabilities: ClassVar[Capabilities] = Capabilities(
        ops=ALL_OPS,
        dtypes=_NUMERIC | {torch.bool},
        devices=frozenset({"cuda"}),
        reduce_support=_REDUCE,
        non_contiguous=True,
        concurrent_progress=True,  # ops run on CUDA streams: they progress without the CPU
        p2p_tags=False,  # NCCL has no tags: a non-zero tag is refused rather than ignored
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._direct: DirectPath | None = None
        self._direct_reason = "the backend is not initialized"
        self._path = "auto"

    # -------------------------------------------------------------------------------------------- probing
    @classmethod
    def probe(cls) -> tuple[bool, str]:
        """(available, reason) for this backend's hardware and torch build."""
        return nccl_available()

    # ----------------------------------------------------------------------------------------- lifecycle
    def _init(self, rdzv: Rendezvous, options: dict[str, Any]) -> Any:
        ok, reason = self.probe()
        if not ok:
            raise BackendNotSupportedError(f"comm backend {self.name!r} cannot run here: {reason}")
        self._path = str(options.get("path") or os.environ.get(PATH_ENV) or "auto").lower()
        if self._path not in PATHS:
            raise InvalidArgumentError(f"{self.name}: path must be one of {', '.join(PATHS)}, got {self._path!r}")
        want = options.get("direct")
        handle = super()._init(rdzv, options)
        if want is False and self._path != "direct":
            self._direct_reason = "the direct path was turned off (direct=False)"
            return handle
        try:
            self._direct = DirectPath(find_library(self.library_flavor))
            self._direct.open("world", rdzv.store, rdzv.rank, rdzv.world_size, self.device, rdzv.timeout_s)
            self._direct_reason = "ok"
        except BaseException as exc:
            self._direct = None
            self._direct_reason = f"{type(exc).__name__}: {exc}"
            if want or self._path == "direct" or not isinstance(exc, Exception):
                super()._destroy()
                raise
            log.warning(
                "%s: no direct path (CUDA graph capture of collectives will be refused): %s",
                self.name,
                self._direct_reason,
            )
        return handle

    def _destroy(self) -> None:
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        super()._destroy()

    def _new_group(self, ranks: tuple[int, ...], group_id: str, timeout_s: float) -> Any:
        pg = super()._new_group(ranks, group_id, timeout_s)
        if self._direct is not None and self._global_rank in ranks:
            self._direct.open(
                group_id,
                self.group_channel(group_id, timeout_s),
                ranks.index(self._global_rank),
                len(ranks),
                self.device,
                timeout_s,
                root_name=ranks[0],
            )
        return pg

    def direct_communicator(self, group: CommGroup | str | None = None) -> NcclCommunicator:
        """The group's direct communicator (ranks are group ranks), for calls on explicit streams; see
        ``sagellm_comm_nccl.binding.NcclCommunicator``."""
        g = self._require_world("direct_communicator") if group is None else self._lookup_group(group)
        comm = self._direct.get(g.group_id) if self._direct is not None else None
        if comm is None:
            raise BackendNotSupportedError(
                f"{self.name}: group {g.group_id} has no direct communicator: {self._direct_reason}"
            )
        return comm

    # --------------------------------------------------------------------------------------------- routing
    def _direct_for(self, group: CommGroup, op: str) -> NcclCommunicator | None:
        """The direct communicator when this call must take the direct path (CUDA graph capture, or
        ``path="direct"``), else None (the process group)."""
        capturing = torch.cuda.is_current_stream_capturing()
        if not capturing and self._path != "direct":
            return None
        if self._path == "process_group":
            raise BackendNotSupportedError(
                f"{self.name} {op} inside CUDA graph capture needs the direct path, but path='process_group' was "
                "chosen; use path='auto'"
            )
        comm = self._direct.get(group.group_id) if self._direct is not None else None
        if comm is None:
            where = "inside CUDA graph capture" if capturing else "with path='direct'"
            raise BackendNotSupportedError(
                f"{self.name} {op} {where} needs the direct NCCL communicator of group {group.group_id}, which "
                f"does not exist: {self._direct_reason}"
            )
        return comm

    @staticmethod
    def _stream_done(op: str, comm: NcclCommunicator, async_op: bool, *finish: Any) -> Work | None:
        """After a direct-path launch: copy-backs are queued right behind it on the same stream (so they follow it),
        then a stream-ordered Work for async calls."""
        for f in finish:
            if f is not None:
                f()
        return StreamWork(op, comm) if async_op else None

    # ------------------------------------------------------------------------------------------ collectives
    def _all_reduce(self, tensor, op, group, async_op):
        comm = self._direct_for(group, "all_reduce")
        if comm is None:
            return super()._all_reduce(tensor, op, group, async_op)
        buf, back = self._contig(tensor)
        comm.all_reduce(buf, op.value)
        return self._stream_done("all_reduce", comm, async_op, back)

    def _all_gather(self, output, tensor, group, async_op):
        comm = self._direct_for(group, "all_gather")
        if comm is None:
            return super()._all_gather(output, tensor, group, async_op)
        buf = tensor.contiguous()
        flat = torch.empty(group.world_size * buf.numel(), dtype=buf.dtype, device=buf.device)
        comm.all_gather(flat, buf.view(-1))
        for o, chunk in zip(output, flat.chunk(group.world_size), strict=True):
            o.copy_(chunk.view(o.shape))
        return self._stream_done("all_gather", comm, async_op)

    def _all_gather_into_tensor(self, output, tensor, group, async_op):
        comm = self._direct_for(group, "all_gather_into_tensor")
        if comm is None:
            return super()._all_gather_into_tensor(output, tensor, group, async_op)
        out, back = self._contig(output)
        comm.all_gather(out.view(-1), tensor.contiguous().view(-1))
        return self._stream_done("all_gather_into_tensor", comm, async_op, back)

    def _reduce_scatter(self, output, input, op, group, async_op):
        comm = self._direct_for(group, "reduce_scatter")
        if comm is None:
            return super()._reduce_scatter(output, input, op, group, async_op)
        out, back = self._contig(output)
        comm.reduce_scatter(out.view(-1), input.contiguous().view(-1), op.value)
        return self._stream_done("reduce_scatter", comm, async_op, back)

    def _broadcast(self, tensor, src, group, async_op):
        comm = self._direct_for(group, "broadcast")
        if comm is None:
            return super()._broadcast(tensor, src, group, async_op)
        buf, back = self._contig(tensor)
        comm.broadcast(buf, src)
        return self._stream_done("broadcast", comm, async_op, back)

    def _reduce(self, tensor, dst, op, group, async_op):
        comm = self._direct_for(group, "reduce")
        if comm is None:
            return super()._reduce(tensor, dst, op, group, async_op)
        buf, back = self._contig(tensor)
        comm.reduce(buf, dst, op.value)
        return self._stream_done("reduce", comm, async_op, back)

    def _gather(self, tensor, gather_list, dst, group, async_op):
        comm = self._direct_for(group, "gather")
        if comm is None:
            return super()._gather(tensor, gather_list, dst, group, async_op)
        outs = [self._contig(o) for o in gather_list] if group.rank == dst else []
        comm.exchange([(tensor.contiguous(), dst)], [(o, r) for r, (o, _) in enumerate(outs)])
        return self._stream_done("gather", comm, async_op, *(b for _, b in outs))

    def _scatter(self, tensor, scatter_list, src, group, async_op):
        comm = self._direct_for(group, "scatter")
        if comm is None:
            return super()._scatter(tensor, scatter_list, src, group, async_op)
        buf, back = self._contig(tensor)
        sends = [(t.contiguous(), r) for r, t in enumerate(scatter_list)] if group.rank == src else []
        comm.exchange(sends, [(buf, src)])
        return self._stream_done("scatter", comm, async_op, back)

    def _all_to_all_single(self, output, input, group, async_op):
        comm = self._direct_for(group, "all_to_all")
        if comm is None:
            return super()._all_to_all_single(output, input, group, async_op)
        out, back = self._contig(output)
        comm.all_to_all_single(out.view(-1), input.contiguous().view(-1))
        return self._stream_done("all_to_all", comm, async_op, back)

    def _all_to_all(self, output, input, group, async_op):
        comm = self._direct_for(group, "all_to_all")
        if comm is None:
            return super()._all_to_all(output, input, group, async_op)
        outs = [self._contig(o) for o in output]
        comm.exchange([(t.contiguous(), r) for r, t in enumerate(input)], [(o, r) for r, (o, _) in enumerate(outs)])
        return self._stream_done("all_to_all", comm, async_op, *(b for _, b in outs))

    def _barrier(self, group, async_op, timeout):
        comm = self._direct_for(group, "barrier")
        if comm is None:
            return super()._barrier(group, async_op, timeout)
        comm.all_reduce(torch.zeros(1, device=comm.device))
        work = StreamWork("barrier", comm)
        if async_op:
            return work
        if not torch.cuda.is_current_stream_capturing():
            work.synchronize(timeout)  # a barrier holds the CPU until every rank arrived, as dist.barrier does
        return None

    # ----------------------------------------------------------------------------------------- point to point
    def _send(self, tensor, dst, group, tag):
        comm = self._direct_for(group, "send")
        if comm is None:
            return super()._send(tensor, dst, group, tag)
        comm.send(tensor.contiguous(), dst)
        return None

    def _recv(self, tensor, src, group, tag):
        comm = self._direct_for(group, "recv")
        if comm is None:
            return super()._recv(tensor, src, group, tag)
        buf, back = self._contig(tensor)
        comm.recv(buf, src)
        self._stream_done("recv", comm, False, back)
        return None

    def _isend(self, tensor, dst, group, tag):
        comm = self._direct_for(group, "send")
        if comm is None:
            return super()._isend(tensor, dst, group, tag)
        comm.send(tensor.contiguous(), dst)
        return StreamWork("send", comm)

    def _irecv(self, tensor, src, group, tag):
        comm = self._direct_for(group, "recv")
        if comm is None:
            return super()._irecv(tensor, src, group, tag)
        buf, back = self._contig(tensor)
        comm.recv(buf, src)
        return self._stream_done("recv", comm, True, back)

    def _batch_p2p(self, items):
        """Fused (``fused_batch_p2p``): NCCL sends block until the peer's receive is posted, so a ring of separate
        ones can deadlock. On the direct path the batch is one ``ncclGroupStart/End``."""
        comm = None
        if len({id(g) for _, _, _, g, _ in items}) == 1:
            comm = self._direct_for(items[0][3], "batch_isend_irecv")
        if comm is None:
            return super()._batch_p2p(items)
        sends, recvs, backs = [], [], []
        for kind, t, peer, _, _ in items:
            if kind == "isend":
                sends.append((t.contiguous(), peer))
            else:
                buf, back = self._contig(t)
                recvs.append((buf, peer))
                backs.append(back)
        comm.exchange(sends, recvs)
        self._stream_done("batch_isend_irecv", comm, False, *backs)
        return [StreamWork("send" if kind == "isend" else "recv", comm) for kind, *_ in items]
