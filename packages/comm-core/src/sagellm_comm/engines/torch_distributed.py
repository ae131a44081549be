"""``TorchDistributedBackend``: the contract on top of a torch.distributed process group.

Plugins for Gloo, NCCL, RCCL and HCCL subclass it and set ``torch_backend`` (the string torch.distributed knows),
``name`` and ``capabilities``. Initialization uses torch's default process group, built on the store the core
hands over (``rendezvous.store``), so code that calls ``torch.distributed`` directly sees the same world; if the
default group already exists (e.g. the application initialized it) and matches the requested rank and world size,
it is adopted, not replaced.

Streams: torch.distributed's semantics are the contract's (docs/streams.md). On an accelerator a collective is
enqueued on the process group's communication stream after an event recorded on the caller's current stream;
``TorchWork.wait()`` makes the current stream wait for it (the CPU is not blocked), ``synchronize()`` also blocks the
CPU. On CPU (Gloo) async ops run on Gloo's own threads: they progress while the caller does other work.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import weakref
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from sagellm_protocol import ReduceOp

from sagellm_comm.backend import CommBackend
from sagellm_comm.engines.p2p_headers import HeaderedP2P
from sagellm_comm.errors import BackendNotSupportedError, GroupInvalidError, InvalidArgumentError
from sagellm_comm.group import CommGroup
from sagellm_comm.rendezvous import Rendezvous
from sagellm_comm.work import FutureWork, Work

__all__ = ["TorchDistributedBackend", "TorchWork"]

_TORCH_OPS: dict[ReduceOp, Any] = {
    ReduceOp.SUM: dist.ReduceOp.SUM,
    ReduceOp.PROD: dist.ReduceOp.PRODUCT,
    ReduceOp.MIN: dist.ReduceOp.MIN,
    ReduceOp.MAX: dist.ReduceOp.MAX,
    ReduceOp.BAND: dist.ReduceOp.BAND,
    ReduceOp.BOR: dist.ReduceOp.BOR,
    ReduceOp.BXOR: dist.ReduceOp.BXOR,
    ReduceOp.AVG: dist.ReduceOp.AVG,
}


class TorchWork(Work):
    """Wraps a torch.distributed ``Work``; ``finish`` runs after completion (copy-back, AVG division)."""

    def __init__(self, op: str, work: Any, finish: Any = None) -> None:
        super().__init__(op, on_complete=finish)
        self._work = work

    def is_completed(self) -> bool:
        """torch's ``Work.is_completed()``: True once the op finished (successfully or not); never blocks."""
        return bool(self._work.is_completed())

    def _wait(self, timeout: float | None) -> bool:
        if timeout is None:
            self._work.wait()
            return True
        try:
            self._work.wait(datetime.timedelta(seconds=timeout))
        except RuntimeError as exc:
            text = str(exc).lower()
            if "timed out" in text or "timeout" in text:
                return False
            raise
        return True


def _destroy_at_exit(ref: weakref.ref[TorchDistributedBackend]) -> None:
    """Release process groups before interpreter teardown: a Gloo group still referenced when the interpreter
    finalizes can abort the process ("terminate called without an active exception")."""
    backend = ref()
    if backend is not None:
        with contextlib.suppress(Exception):
            backend.destroy()


def _device_index(device: Any, device_type: str, local_rank: int) -> int:
    """The device index an ``options["device"]`` names (an int, ``"cuda:1"``, a ``torch.device``), else the local
    rank."""
    if device is None:
        return local_rank
    if isinstance(device, bool):
        raise InvalidArgumentError(f"device must be an index or a {device_type} device, got {device!r}")
    if isinstance(device, int):
        return device
    dev = torch.device(device)
    if dev.type != device_type:
        raise InvalidArgumentError(f"device {device!r} is not a {device_type} device")
    return local_rank if dev.index is None else dev.index


def _pg(group: CommGroup) -> Any:
    return group.handle


class TorchDistributedBackend(CommBackend):
    """Base for backends that run on a torch.distributed process group."""

    torch_backend: ClassVar[str] = ""
    # AVG through the engine, or SUM followed by a division here (for engines/versions without a native AVG)
    native_avg: ClassVar[bool] = False
    # the torch device type of the tensors; an accelerator engine ("cuda", "npu", "xpu") binds one local device per
    # rank at init (``_device_id``)
    device_type: ClassVar[str] = "cpu"
    # start a batch of sends/receives as one fused group (torch's batch_isend_irecv); engines whose point-to-point
    # calls block until matched (NCCL, HCCL) need it, or a ring of them deadlocks
    fused_batch_p2p: ClassVar[bool] = False
    # each message carries its dtype and size (``p2p_headers.py``): a mismatched receive raises COMM_RANK_MISMATCH
    # instead of returning garbage or aborting the process; for host-memory engines (on a device the header check
    # would block the host on every receive)
    p2p_headers: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.engine_checks_p2p = cls.p2p_headers

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._owns_default_group = False
        self._device: torch.device | None = None
        self._headered = HeaderedP2P() if self.p2p_headers else None

    @property
    def device(self) -> torch.device:
        """``cpu``, or after init the accelerator bound to this rank (``cuda:<LOCAL_RANK>``); before init the bare
        device type (built on first use: torch knows some types, e.g. ``npu``, only once their extension is
        imported)."""
        return self._device if self._device is not None else torch.device(self.device_type)

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def _init(self, rdzv: Rendezvous, options: dict[str, Any]) -> Any:
        if not dist.is_available():
            raise BackendNotSupportedError(f"{self.name}: this torch build has no torch.distributed")
        timeout = datetime.timedelta(seconds=rdzv.timeout_s)
        if dist.is_initialized():
            self._device_id(rdzv, options)
            if dist.get_rank() != rdzv.rank or dist.get_world_size() != rdzv.world_size:
                raise GroupInvalidError(
                    f"torch.distributed is already initialized as rank {dist.get_rank()} of "
                    f"{dist.get_world_size()}, not rank {rdzv.rank} of {rdzv.world_size}; destroy it first"
                )
            if self.torch_backend not in str(dist.get_backend()):
                raise GroupInvalidError(
                    f"torch.distributed is already initialized with backend {dist.get_backend()!r}, not "
                    f"{self.torch_backend!r}; destroy it first or use the matching sagellm-comm backend"
                )
            self._owns_default_group = False
            return dist.group.WORLD
        kwargs: dict[str, Any] = {
            "backend": self.torch_backend,
            "rank": rdzv.rank,
            "world_size": rdzv.world_size,
            "timeout": timeout,
        }
        device_id = self._device_id(rdzv, options)
        if device_id is not None:
            kwargs["device_id"] = device_id
        # the core's side channel is the process group's store (c10d's factory gets a store the same way)
        kwargs["store"] = rdzv.store.store
        dist.init_process_group(**kwargs)
        self._owns_default_group = True
        atexit.register(_destroy_at_exit, weakref.ref(self))
        return dist.group.WORLD

    def _device_id(self, rdzv: Rendezvous, options: dict[str, Any]) -> torch.device | None:
        """Bind this rank to its local accelerator and return it (None on CPU).

        The device is ``options["device"]`` (an index, ``"cuda:1"`` or a ``torch.device``) when given, else the
        local rank (LOCAL_RANK, as torchrun sets it; the global rank when unset), the convention of torchrun, vLLM and
        torch.distributed's own examples. It must exist: two ranks on one device is refused by NCCL/HCCL anyway, so a
        local rank past the device count is an error that says so rather than a silent wrap-around.
        """
        if self.device_type == "cpu":
            return None
        module = torch.get_device_module(self.device_type)
        count = int(module.device_count())
        if count == 0:
            raise BackendNotSupportedError(f"{self.name}: torch {torch.__version__} found no {self.device_type} device")
        index = _device_index(options.get("device"), self.device_type, rdzv.local_rank)
        if not 0 <= index < count:
            raise InvalidArgumentError(
                f"{self.name}: rank {rdzv.rank} (local rank {rdzv.local_rank}) needs {self.device_type}:{index}, but "
                f"this host shows {count} {self.device_type} device(s); run at most {count} ranks per host, or pass "
                "device=<index> to init_process_group (one device per rank)"
            )
        module.set_device(index)
        self._device = torch.device(self.device_type, index)
        return self._device

    def _destroy(self) -> None:
        if self._headered is not None:
            self._headered.close()
            self._headered = HeaderedP2P()
        if not dist.is_initialized():
            return
        for g in list(self._groups.values()):
            if g.group_id != "world" and g.handle is not None:
                dist.destroy_process_group(g.handle)
        if self._owns_default_group:
            dist.destroy_process_group()
        self._owns_default_group = False

    def _new_group(self, ranks: tuple[int, ...], group_id: str, timeout_s: float) -> Any:
        pg = dist.new_group(list(ranks), timeout=datetime.timedelta(seconds=timeout_s), backend=self.torch_backend)
        return pg if self._global_rank in ranks else None

    # -- helpers -----------------------------------------------------------------------------------------------
    def _done(self, op: str, work: Any, async_op: bool, finish: Any = None) -> Work | None:
        if async_op:
            return TorchWork(op, work, finish)
        if finish is not None:
            finish()
        return None

    @staticmethod
    def _contig(t: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """A contiguous stand-in for ``t`` and the copy-back to run once the op completed (or None)."""
        if t.is_contiguous():
            return t, None
        tmp = t.contiguous()
        return tmp, lambda: t.copy_(tmp)

    def _reduce_args(self, t: torch.Tensor, op: ReduceOp, group: CommGroup) -> tuple[torch.Tensor, Any, Any]:
        buf, copy_back = self._contig(t)
        if op is ReduceOp.AVG and not self.native_avg:
            n = group.world_size

            def finish() -> None:
                buf.div_(n)
                if copy_back is not None:
                    copy_back()

            return buf, dist.ReduceOp.SUM, finish
        return buf, _TORCH_OPS[op], copy_back

    # -- collectives -------------------------------------------------------------------------------------------
    def _all_reduce(self, tensor: torch.Tensor, op: ReduceOp, group: CommGroup, async_op: bool) -> Work | None:
        buf, top, finish = self._reduce_args(tensor, op, group)
        work = dist.all_reduce(buf, op=top, group=_pg(group), async_op=async_op)
        return self._done("all_reduce", work, async_op, finish)

    # list entries are flattened: the contract asks only for matching element counts, torch for matching shapes
    def _all_gather(
        self, output: list[torch.Tensor], tensor: torch.Tensor, group: CommGroup, async_op: bool
    ) -> Work | None:
        buf, _ = self._contig(tensor)
        outs = [self._contig(o) for o in output]
        work = dist.all_gather([o.view(-1) for o, _ in outs], buf.view(-1), group=_pg(group), async_op=async_op)
        backs = [b for _, b in outs if b is not None]
        return self._done("all_gather", work, async_op, (lambda: [b() for b in backs]) if backs else None)

    def _all_gather_into_tensor(
        self, output: torch.Tensor, tensor: torch.Tensor, group: CommGroup, async_op: bool
    ) -> Work | None:
        buf, _ = self._contig(tensor)
        out, back = self._contig(output)
        work = dist.all_gather_into_tensor(out.view(-1), buf.view(-1), group=_pg(group), async_op=async_op)
        return self._done("all_gather_into_tensor", work, async_op, back)

    def _reduce_scatter(
        self, output: torch.Tensor, input: torch.Tensor, op: ReduceOp, group: CommGroup, async_op: bool
    ) -> Work | None:
        out, top, finish = self._reduce_args(output, op, group)
        src, _ = self._contig(input)
        work = dist.reduce_scatter_tensor(out.view(-1), src.view(-1), op=top, group=_pg(group), async_op=async_op)
        return self._done("reduce_scatter", work, async_op, finish)

    def _broadcast(self, tensor: torch.Tensor, src: int, group: CommGroup, async_op: bool) -> Work | None:
        buf, back = self._contig(tensor)
        work = dist.broadcast(buf, src=group.global_ranks[src], group=_pg(group), async_op=async_op)
        return self._done("broadcast", work, async_op, back)

    def _reduce(self, tensor: torch.Tensor, dst: int, op: ReduceOp, group: CommGroup, async_op: bool) -> Work | None:
        buf, top, finish = self._reduce_args(tensor, op, group)
        if group.rank != dst and op is ReduceOp.AVG and not self.native_avg:
            finish = None  # only the root holds the result
        work = dist.reduce(buf, dst=group.global_ranks[dst], op=top, group=_pg(group), async_op=async_op)
        return self._done("reduce", work, async_op, finish)

    def _gather(
        self, tensor: torch.Tensor, gather_list: list[torch.Tensor] | None, dst: int, group: CommGroup, async_op: bool
    ) -> Work | None:
        buf, _ = self._contig(tensor)
        outs = [self._contig(o) for o in gather_list] if gather_list is not None else None
        work = dist.gather(
            buf.view(-1),
            [o.view(-1) for o, _ in outs] if outs else None,
            dst=group.global_ranks[dst],
            group=_pg(group),
            async_op=async_op,
        )
        backs = [b for _, b in outs or () if b is not None]
        return self._done("gather", work, async_op, (lambda: [b() for b in backs]) if backs else None)

    def _scatter(
        self, tensor: torch.Tensor, scatter_list: list[torch.Tensor] | None, src: int, group: CommGroup, async_op: bool
    ) -> Work | None:
        buf, back = self._contig(tensor)
        ins = [t.contiguous().view(-1) for t in scatter_list] if scatter_list is not None else None
        work = dist.scatter(buf.view(-1), ins, src=group.global_ranks[src], group=_pg(group), async_op=async_op)
        return self._done("scatter", work, async_op, back)

    def _all_to_all_single(
        self, output: torch.Tensor, input: torch.Tensor, group: CommGroup, async_op: bool
    ) -> Work | None:
        out, back = self._contig(output)
        src, _ = self._contig(input)
        # rank-major chunks of the flattened tensors (0-d ones included), as the core's size check promises
        work = dist.all_to_all_single(out.view(-1), src.view(-1), group=_pg(group), async_op=async_op)
        return self._done("all_to_all", work, async_op, back)

    def _all_to_all(
        self, output: list[torch.Tensor], input: list[torch.Tensor], group: CommGroup, async_op: bool
    ) -> Work | None:
        outs = [self._contig(o) for o in output]
        work = dist.all_to_all(
            [o.view(-1) for o, _ in outs], [t.contiguous().view(-1) for t in input], group=_pg(group), async_op=async_op
        )
        backs = [b for _, b in outs if b is not None]
        return self._done("all_to_all", work, async_op, (lambda: [b() for b in backs]) if backs else None)

    def _barrier(self, group: CommGroup, async_op: bool, timeout: float | None) -> Work | None:
        if timeout is not None and not async_op:
            # monitored_barrier would need every rank's ack; a timed wait on the barrier's work is enough here
            pending = dist.barrier(group=_pg(group), async_op=True)
            TorchWork("barrier", pending).wait(timeout)
            return None
        work = dist.barrier(group=_pg(group), async_op=async_op)
        return self._done("barrier", work, async_op)

    # -- point to point ----------------------------------------------------------------------------------------
    def _send(self, tensor: torch.Tensor, dst: int, group: CommGroup, tag: int) -> None:
        if self._headered is not None:
            for work in self._headered.isend(tensor, group.global_ranks[dst], _pg(group), tag):
                work.wait()
            return
        dist.send(tensor.contiguous(), dst=group.global_ranks[dst], group=_pg(group), tag=tag)

    def _recv(self, tensor: torch.Tensor, src: int, group: CommGroup, tag: int) -> None:
        if self._headered is not None:
            self._headered.recv(tensor, group.global_ranks[src], _pg(group), tag, f"rank {src}")
            return
        buf, back = self._contig(tensor)
        dist.recv(buf, src=group.global_ranks[src], group=_pg(group), tag=tag)
        if back is not None:
            back()

    def _isend(self, tensor: torch.Tensor, dst: int, group: CommGroup, tag: int) -> Work:
        if self._headered is not None:
            *first, last = self._headered.isend(tensor, group.global_ranks[dst], _pg(group), tag)
            return TorchWork("send", last, (lambda: [w.wait() for w in first]) if first else None)
        buf = tensor.contiguous()
        work = dist.isend(buf, dst=group.global_ranks[dst], group=_pg(group), tag=tag)
        return TorchWork("send", work)

    def _irecv(self, tensor: torch.Tensor, src: int, group: CommGroup, tag: int) -> Work:
        if self._headered is not None:
            return FutureWork(
                "recv", self._headered.irecv(tensor, group.global_ranks[src], _pg(group), tag, f"rank {src}")
            )
        buf, back = self._contig(tensor)
        work = dist.irecv(buf, src=group.global_ranks[src], group=_pg(group), tag=tag)
        return TorchWork("recv", work, back)

    def _batch_p2p(self, items: list[tuple[str, torch.Tensor, int, CommGroup, int]]) -> list[Work]:
        if not self.fused_batch_p2p or len({id(g) for _, _, _, g, _ in items}) > 1:  # torch fuses one group at a time
            return super()._batch_p2p(items)
        ops, backs = [], []
        for kind, t, peer, g, tag in items:
            buf, back = (t.contiguous(), None) if kind == "isend" else self._contig(t)
            ops.append(
                dist.P2POp(
                    dist.isend if kind == "isend" else dist.irecv, buf, g.global_ranks[peer], group=_pg(g), tag=tag
                )
            )
            backs.append(back)
        works = dist.batch_isend_irecv(ops)
        # a fused batch may come back as one handle for all of it: every item's Work then waits on that one
        handles = works if len(works) == len(items) else [works[-1]] * len(items)
        return [
            TorchWork("send" if kind == "isend" else "recv", h, back)
            for (kind, *_), h, back in zip(items, handles, backs, strict=True)
        ]
