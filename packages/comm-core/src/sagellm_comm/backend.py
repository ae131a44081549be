"""The ``CommBackend`` contract.

A backend plugin subclasses ``CommBackend``, sets ``name`` and ``capabilities`` and implements the
underscored engine methods (``_init``, ``_all_reduce``, ...). The public methods here are the same for every
backend: they resolve the group, check the call against the declared capabilities and the arguments (so bad
input fails identically everywhere, before any rank starts the op), translate engine exceptions into protocol-coded
errors, and return the result (sync) or a ``Work`` handle (``sagellm_comm.work.Work``, ``async_op=True``).

Roots and peers (``src_rank``, ``dst_rank``) are ranks *in the group* the call runs on; for the world group these
are the global ranks.
"""

from __future__ import annotations

import gc
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from sagellm_protocol import CommBackendType, ReduceOp

from sagellm_comm.capabilities import Capabilities
from sagellm_comm.debug import check_call, debug_detail
from sagellm_comm.debug_p2p import p2p_lane_check
from sagellm_comm.errors import (
    BackendNotSupportedError,
    CommError,
    CommTimeoutError,
    GroupInvalidError,
    GroupNotFoundError,
    InvalidArgumentError,
    NotInitializedError,
    RankMismatchError,
)
from sagellm_comm.group import CommGroup, validate_group_ranks
from sagellm_comm.ops import CommOp, normalize_reduce_op
from sagellm_comm.rendezvous import DEFAULT_TIMEOUT_S, Rendezvous, check_timeout, resolve_rendezvous
from sagellm_comm.store import SideChannel, open_side_channel, release_side_channel
from sagellm_comm.trace import FlightRecorder
from sagellm_comm.work import CompletedWork, Work, engine_error, failures, note_failure

__all__ = ["CommBackend", "CommOp", "P2POp", "ReduceOp", "active_backends", "live_backends"]

_P2P_OPS = frozenset({"send", "recv"})
# every backend initialized in this process with its own side channel and not destroyed yet, oldest first (by id:
# two instances of one name are both here)
_LIVE: dict[int, CommBackend] = {}


def active_backends() -> dict[str, CommBackend]:
    """Backends initialized in this process, by name (the most recent one of each name)."""
    return {b.name: b for b in _LIVE.values()}  # a newer instance of a name replaces an older one


def live_backends() -> list[CommBackend]:
    """Every backend initialized in this process and not destroyed yet, oldest first; unlike ``active_backends``
    it keeps several instances of one name (what a process must destroy before it exits)."""
    return list(_LIVE.values())


@dataclass
class P2POp:
    """One entry of ``CommBackend.batch_isend_irecv``: ``op`` is ``"isend"`` or ``"irecv"``."""

    op: str
    tensor: torch.Tensor
    peer: int
    group: CommGroup | None = None
    tag: int = 0


class CommBackend(ABC):
    """One communication backend instance: initialize it once per process, then call collectives on it."""

    name: ClassVar[str] = "abstract"
    capabilities: ClassVar[Capabilities]
    # the engine itself rejects a receive whose dtype or size differs from the message (gloo's headers, the memory
    # engines' tags); otherwise debug mode checks point-to-point through the side channel (``debug_p2p.py``)
    # (a class attribute; a composite sets it per instance from its transports)
    engine_checks_p2p: bool = False

    def __init__(self, **options: Any) -> None:
        self.options = options
        self._global_rank = -1
        self._world: CommGroup | None = None
        self._groups: dict[str, CommGroup] = {}
        self._group_counter = itertools.count(1)
        self.rendezvous: Rendezvous | None = None
        self._channel: SideChannel | None = None
        self._debug_seqs: dict[str, int] = {}  # per group: collectives checked in debug mode
        self._debug_p2p: dict[tuple[Any, ...], int] = {}  # per lane: messages checked in debug mode
        self._failures_at_init = 0  # work.failures() when init ran: destroy() collects garbage after a failure
        self._debug = False  # SAGELLM_COMM_DEBUG=detail, read at init
        self.recorder = FlightRecorder(self.name)
        self._owns_channel = True  # False when a composite attached it to a channel of its own
        self.selected_because = ""  # set when ``get_comm_backend("auto")`` chose it: why

    # ------------------------------------------------------------------------------------------------------
    # construction and lifecycle
    # ------------------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, name: str | None = "auto", **options: Any) -> CommBackend:
        """``CommBackend.create("gloo")``: same as ``sagellm_comm.get_comm_backend``."""
        from sagellm_comm.registry import get_comm_backend

        return get_comm_backend(name, **options)

    @property
    def backend_type(self) -> CommBackendType:
        try:
            return CommBackendType(self.name)
        except ValueError:
            return CommBackendType.CUSTOM

    @property
    def is_initialized(self) -> bool:
        return self._world is not None

    @property
    def device(self) -> torch.device:
        """The device this rank's tensors live on for this backend: ``cpu`` for CPU backends; for accelerator
        backends the one local device bound to this rank at init (e.g. ``cuda:<LOCAL_RANK>``). The conformance
        suite allocates every tensor here."""
        return torch.device("cpu")

    # ------------------------------------------------------------------------------------------------------
    # the side channel (docs/architecture.md): a namespaced store for group setup, opened by the core
    # ------------------------------------------------------------------------------------------------------
    @property
    def side_channel(self) -> SideChannel:
        """This backend initialization's namespace on the rendezvous store (after init)."""
        self._require_world("side_channel")
        assert self._channel is not None
        return self._channel

    def group_channel(self, group_id: str, timeout_s: float | None = None) -> SideChannel:
        """The namespace for one group's setup (``_new_group`` uses it; every rank, member or not, gets the same
        one for the same ``group_id``); waits are bounded by ``timeout_s`` (default: the group's, else the
        rendezvous timeout)."""
        if self._channel is None:
            raise NotInitializedError(f"group_channel({group_id!r}) called before init of the {self.name} backend")
        if timeout_s is None and group_id in self._groups:
            timeout_s = self._groups[group_id].timeout_s
        return self._channel.scope(f"groups/{group_id}", timeout_s)

    def init_process_group(
        self,
        world_size: int | None = None,
        rank: int | None = None,
        *,
        master_addr: str | None = None,
        master_port: int | None = None,
        timeout: float | None = None,
        init_method: str | None = None,
        **options: Any,
    ) -> CommGroup:
        """Join the world: every rank calls this with the same world size and master address.

        With no arguments it reads the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
        MASTER_PORT). ``timeout`` (seconds) bounds the rendezvous and every later blocking call on the world.
        """
        if self._world is not None:
            raise GroupInvalidError(
                f"{self.name} backend is already initialized (rank {self._global_rank} of "
                f"{self._world.world_size}); call destroy() before initializing it again"
            )
        rdzv = resolve_rendezvous(world_size, rank, master_addr, master_port, timeout, init_method)
        self._debug = debug_detail()
        self._failures_at_init = failures()
        try:
            channel = open_side_channel(rdzv, self.name)
        except CommError:
            raise
        except Exception as exc:
            raise self._translate_error("init_process_group", exc) from exc
        return self._attach(replace(rdzv, store=channel), options, owns_channel=True)

    def attach(self, rendezvous: Rendezvous, **options: Any) -> CommGroup:
        """Join a world whose side channel the caller opened (``rendezvous.store``, a ``SideChannel``): how a
        composite backend initializes its transports on scopes of its own channel, each with its own ranks
        (e.g. the ranks of one node). ``destroy()`` leaves the channel to the caller."""
        if self._world is not None:
            raise GroupInvalidError(f"{self.name} backend is already initialized; call destroy() first")
        if not isinstance(rendezvous, Rendezvous) or rendezvous.store is None:
            raise InvalidArgumentError("attach() needs a Rendezvous whose store is an open SideChannel")
        self._debug = debug_detail()
        self._failures_at_init = failures()
        return self._attach(rendezvous, options, owns_channel=False)

    def _attach(self, rdzv: Rendezvous, options: dict[str, Any], *, owns_channel: bool) -> CommGroup:
        self._channel = rdzv.store
        try:
            handle = self._init(rdzv, {**self.options, **options})
        except BaseException as exc:
            self._channel = None
            if owns_channel:
                release_side_channel(rdzv)
            if isinstance(exc, CommError) or not isinstance(exc, Exception):
                raise
            raise self._translate_error("init_process_group", exc) from exc
        self._owns_channel = owns_channel
        self.rendezvous = rdzv
        self.recorder.reset()
        self.recorder.rank, self.recorder.world_size = rdzv.rank, rdzv.world_size
        self._global_rank = rdzv.rank
        self._world = CommGroup(self, range(rdzv.world_size), "world", handle, rdzv.timeout_s)
        self._groups = {"world": self._world}
        if owns_channel:
            _LIVE[id(self)] = self
        return self._world

    def init(
        self,
        rank: int | None = None,
        world_size: int | None = None,
        master_addr: str | None = None,
        master_port: int | None = None,
        **options: Any,
    ) -> CommGroup:
        """The seed's spelling: ``backend.init(rank=0, world_size=1, master_addr=..., master_port=...)``."""
        return self.init_process_group(world_size, rank, master_addr=master_addr, master_port=master_port, **options)

    def destroy(self) -> None:
        """Leave the world and release every group; safe to call twice."""
        if self._world is None:
            return
        try:
            self._destroy()
        finally:
            for g in self._groups.values():
                g.handle = None
            self._groups = {}
            self._world = None
            self._global_rank = -1
            self._debug_seqs = {}
            self._debug_p2p = {}
            self._channel = None
            # an engine group a failed call left in a reference cycle (its exception's traceback) keeps its
            # sockets open, so peers blocked on this rank would wait out their timeout: collect it now (a full
            # collection costs ~0.1 s in a torch process, so only after a failure)
            if failures() != self._failures_at_init:
                gc.collect()
            if self.rendezvous is not None and self._owns_channel:
                release_side_channel(self.rendezvous)
            _LIVE.pop(id(self), None)  # an older live instance of this name, if any, is the active one again

    destroy_process_group = destroy

    def __enter__(self) -> CommBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # ------------------------------------------------------------------------------------------------------
    # groups
    # ------------------------------------------------------------------------------------------------------
    @property
    def world_group(self) -> CommGroup:
        return self._require_world("world_group")

    def get_rank(self, group: CommGroup | str | None = None) -> int:
        """This process's rank in ``group`` (default: the world); -1 if it is not a member."""
        g = self._require_world("get_rank") if group is None else self._lookup_group(group)
        return g.rank

    def get_world_size(self, group: CommGroup | str | None = None) -> int:
        """The number of ranks in ``group`` (default: the world)."""
        g = self._require_world("get_world_size") if group is None else self._lookup_group(group)
        return g.world_size

    def create_group(
        self, ranks: Sequence[int], group_id: str | None = None, *, timeout: float | None = None
    ) -> CommGroup:
        """Create a sub-group (TP, PP, ...). Every rank of the world calls this, with the same ranks, in the
        same order of calls (as ``torch.distributed.new_group``); ranks outside get a non-member group."""
        world = self._require_world("create_group")
        members = validate_group_ranks(ranks, world.world_size)
        if not self.capabilities.sub_groups:
            raise self._unsupported("create_group")
        if group_id is None:
            group_id = f"g{next(self._group_counter)}[{','.join(map(str, members))}]"
        elif not isinstance(group_id, str):
            raise InvalidArgumentError(f"group id must be a string, got {type(group_id).__name__} {group_id!r}")
        elif group_id in self._groups:
            raise InvalidArgumentError(f"group id {group_id!r} already exists; pick another or omit it")
        if timeout is not None:
            timeout_s = check_timeout("create_group timeout", timeout)
        else:  # the world's (a backend's world group always carries its rendezvous timeout)
            timeout_s = world.timeout_s if world.timeout_s is not None else DEFAULT_TIMEOUT_S
        try:
            handle = self._new_group(members, group_id, timeout_s)
        except CommError:
            raise
        except Exception as exc:
            raise self._translate_error("create_group", exc) from exc
        group = CommGroup(self, members, group_id, handle, timeout_s)
        self._groups[group_id] = group
        return group

    def get_group(self, group_id: str) -> CommGroup:
        """The live group ``group_id`` of this backend (``GroupNotFoundError`` if there is none)."""
        return self._lookup_group(group_id)

    # ------------------------------------------------------------------------------------------------------
    # collectives
    # ------------------------------------------------------------------------------------------------------
    def all_reduce(
        self, tensor: torch.Tensor, op: ReduceOp | str = "sum", group: Any = None, async_op: bool = False
    ) -> Any:
        """Reduce ``tensor`` across the group in place; returns the tensor (or a Work handle)."""
        g = self._group(group, "all_reduce")
        async_op = self._check_async(async_op, "all_reduce")
        rop = self._reduce_op(op, tensor, "all_reduce")
        return self._run("all_reduce", self._all_reduce, tensor, async_op, tensor, rop, g, async_op)

    def all_gather(
        self,
        tensor: torch.Tensor,
        group: Any = None,
        async_op: bool = False,
        *,
        output: list[torch.Tensor] | None = None,
    ) -> Any:
        """Gather every rank's ``tensor``; returns the list (rank order), filling ``output`` if given."""
        g = self._group(group, "all_gather")
        async_op = self._check_async(async_op, "all_gather")
        self._check_tensor(tensor, "all_gather")
        if output is None:
            output = [torch.empty_like(tensor) for _ in range(g.world_size)]
        else:
            self._check_list(output, g.world_size, tensor, "all_gather", "output")
        return self._run("all_gather", self._all_gather, output, async_op, output, tensor, g, async_op)

    def all_gather_into_tensor(
        self, output: torch.Tensor, tensor: torch.Tensor, group: Any = None, async_op: bool = False
    ) -> Any:
        """Gather into one tensor of ``world_size * tensor.numel()`` elements (rank-major)."""
        g = self._group(group, "all_gather_into_tensor")
        async_op = self._check_async(async_op, "all_gather_into_tensor")
        self._check_tensor(tensor, "all_gather_into_tensor")
        self._check_tensor(output, "all_gather_into_tensor", "output")
        self._check_sized(output, tensor, g.world_size, "all_gather_into_tensor", "output")
        return self._run(
            "all_gather_into_tensor", self._all_gather_into_tensor, output, async_op, output, tensor, g, async_op
        )

    def reduce_scatter(
        self,
        output: torch.Tensor,
        input: torch.Tensor | Sequence[torch.Tensor],
        op: ReduceOp | str = "sum",
        group: Any = None,
        async_op: bool = False,
    ) -> Any:
        """Reduce ``input`` across the group and leave chunk ``rank`` in ``output``.

        ``input`` is one tensor of ``world_size * output.numel()`` elements, or a list of ``world_size`` tensors
        shaped like ``output``.
        """
        g = self._group(group, "reduce_scatter")
        async_op = self._check_async(async_op, "reduce_scatter")
        self._check_tensor(output, "reduce_scatter", "output")
        if isinstance(input, torch.Tensor):
            self._check_tensor(input, "reduce_scatter", "input")
            self._check_sized(input, output, g.world_size, "reduce_scatter", "input")
            flat = input
        else:
            self._check_list(input, g.world_size, output, "reduce_scatter", "input")
            flat = torch.cat([t.reshape(-1) for t in input]) if g.world_size > 1 else input[0]
        rop = self._reduce_op(op, output, "reduce_scatter")
        return self._run("reduce_scatter", self._reduce_scatter, output, async_op, output, flat, rop, g, async_op)

    def broadcast(self, tensor: torch.Tensor, src_rank: int = 0, group: Any = None, async_op: bool = False) -> Any:
        """Copy ``tensor`` of rank ``src_rank`` to every rank of the group, in place."""
        g = self._group(group, "broadcast")
        async_op = self._check_async(async_op, "broadcast")
        self._check_tensor(tensor, "broadcast")
        self._check_peer(src_rank, g, "broadcast", "src_rank", allow_self=True)
        return self._run("broadcast", self._broadcast, tensor, async_op, tensor, src_rank, g, async_op)

    def reduce(
        self,
        tensor: torch.Tensor,
        dst_rank: int = 0,
        op: ReduceOp | str = "sum",
        group: Any = None,
        async_op: bool = False,
    ) -> Any:
        """Reduce into ``tensor`` of rank ``dst_rank`` (other ranks' tensors are left unspecified, as in NCCL)."""
        g = self._group(group, "reduce")
        async_op = self._check_async(async_op, "reduce")
        self._check_peer(dst_rank, g, "reduce", "dst_rank", allow_self=True)
        rop = self._reduce_op(op, tensor, "reduce")
        return self._run("reduce", self._reduce, tensor, async_op, tensor, dst_rank, rop, g, async_op)

    def gather(
        self,
        tensor: torch.Tensor,
        gather_list: list[torch.Tensor] | None = None,
        dst_rank: int = 0,
        group: Any = None,
        async_op: bool = False,
    ) -> Any:
        """Gather every rank's ``tensor`` on ``dst_rank``; returns the list there and None elsewhere."""
        g = self._group(group, "gather")
        async_op = self._check_async(async_op, "gather")
        self._check_tensor(tensor, "gather")
        self._check_peer(dst_rank, g, "gather", "dst_rank", allow_self=True)
        if g.rank == dst_rank:
            if gather_list is None:
                gather_list = [torch.empty_like(tensor) for _ in range(g.world_size)]
            else:
                self._check_list(gather_list, g.world_size, tensor, "gather", "gather_list")
        else:
            gather_list = None
        return self._run("gather", self._gather, gather_list, async_op, tensor, gather_list, dst_rank, g, async_op)

    def scatter(
        self,
        tensor: torch.Tensor,
        scatter_list: Sequence[torch.Tensor] | None = None,
        src_rank: int = 0,
        group: Any = None,
        async_op: bool = False,
    ) -> Any:
        """Rank ``src_rank`` sends ``scatter_list[i]`` to rank ``i``, which receives it into ``tensor``."""
        g = self._group(group, "scatter")
        async_op = self._check_async(async_op, "scatter")
        self._check_tensor(tensor, "scatter")
        self._check_peer(src_rank, g, "scatter", "src_rank", allow_self=True)
        if g.rank == src_rank:
            if scatter_list is None:
                raise InvalidArgumentError(f"scatter: rank {src_rank} is the source and must pass scatter_list")
            self._check_list(scatter_list, g.world_size, tensor, "scatter", "scatter_list")
            scatter_list = list(scatter_list)
        else:
            scatter_list = None
        return self._run("scatter", self._scatter, tensor, async_op, tensor, scatter_list, src_rank, g, async_op)

    def all_to_all(
        self,
        output: torch.Tensor | list[torch.Tensor],
        input: torch.Tensor | Sequence[torch.Tensor],
        group: Any = None,
        async_op: bool = False,
    ) -> Any:
        """Rank ``i`` sends chunk ``j`` of ``input`` to rank ``j``, which stores it as chunk ``i`` of ``output``.

        Either both are lists of ``world_size`` tensors, or both are single tensors split evenly along dim 0.
        """
        g = self._group(group, "all_to_all")
        async_op = self._check_async(async_op, "all_to_all")
        if isinstance(input, torch.Tensor):
            if not isinstance(output, torch.Tensor):
                raise InvalidArgumentError("all_to_all: input is a tensor, so output must be a tensor too")
            self._check_tensor(input, "all_to_all", "input")
            self._check_tensor(output, "all_to_all", "output")
            if input.numel() != output.numel() or input.dtype != output.dtype:
                raise InvalidArgumentError(
                    f"all_to_all: output ({output.numel()} x {output.dtype}) must match input "
                    f"({input.numel()} x {input.dtype})"
                )
            if input.numel() % g.world_size:
                raise InvalidArgumentError(
                    f"all_to_all: {input.numel()} elements do not split evenly over {g.world_size} ranks"
                )
            return self._run("all_to_all", self._all_to_all_single, output, async_op, output, input, g, async_op)
        if isinstance(output, torch.Tensor):
            raise InvalidArgumentError("all_to_all: input is a list, so output must be a list too")
        for name, lst in (("input", input), ("output", output)):
            if not isinstance(lst, (list, tuple)):
                raise InvalidArgumentError(
                    f"all_to_all: {name} must be a tensor or a list of {g.world_size} tensors, got {type(lst).__name__}"
                )
        inputs, outputs = list(input), list(output)
        for name, lst in (("input", inputs), ("output", outputs)):
            if len(lst) != g.world_size:
                raise InvalidArgumentError(f"all_to_all: {name} has {len(lst)} tensors, need {g.world_size}")
            for t in lst:
                self._check_tensor(t, "all_to_all", name)
        dtypes = {t.dtype for t in inputs + outputs}
        if len(dtypes) > 1:
            raise InvalidArgumentError(
                f"all_to_all: every input and output tensor must have one dtype, got "
                f"{sorted(str(d).removeprefix('torch.') for d in dtypes)}"
            )
        me = g.rank  # this rank's own chunk stays here: its sizes must agree (the other chunks are the peers')
        if inputs[me].numel() != outputs[me].numel():
            raise InvalidArgumentError(
                f"all_to_all: output[{me}] has {outputs[me].numel()} elements but input[{me}], "
                f"this rank's chunk for itself, has {inputs[me].numel()}"
            )
        return self._run("all_to_all", self._all_to_all, outputs, async_op, outputs, inputs, g, async_op)

    def barrier(self, group: Any = None, async_op: bool = False, timeout: float | None = None) -> Any:
        """Block until every rank of the group reaches the barrier (at most ``timeout`` seconds)."""
        g = self._group(group, "barrier")
        async_op = self._check_async(async_op, "barrier")
        if timeout is not None:
            timeout = check_timeout("barrier timeout", timeout)
        return self._run("barrier", self._barrier, None, async_op, g, async_op, timeout)

    # ------------------------------------------------------------------------------------------------------
    # point to point
    # ------------------------------------------------------------------------------------------------------
    def send(self, tensor: torch.Tensor, dst_rank: int, group: Any = None, tag: int = 0) -> None:
        """Send ``tensor`` to ``dst_rank`` (blocking until it is handed to the engine). Buffers such as
        ``bytes`` are sent as uint8 tensors."""
        g = self._group(group, "send")
        tensor = self._as_tensor(tensor, "send")
        self._check_tensor(tensor, "send")
        self._check_peer(dst_rank, g, "send", "dst_rank", allow_self=False)
        self._check_tag(tag, "send")
        self._run("send", self._send, None, False, tensor, dst_rank, g, tag)

    def recv(self, tensor: torch.Tensor, src_rank: int, group: Any = None, tag: int = 0) -> Any:
        """Receive into ``tensor`` from ``src_rank``; returns the filled buffer."""
        g = self._group(group, "recv")
        buf = self._as_tensor(tensor, "recv", writable=True)
        self._check_tensor(buf, "recv")
        self._check_peer(src_rank, g, "recv", "src_rank", allow_self=False)
        self._check_tag(tag, "recv")
        self._run("recv", self._recv, None, False, buf, src_rank, g, tag)
        return tensor

    def isend(self, tensor: torch.Tensor, dst_rank: int, group: Any = None, tag: int = 0) -> Work:
        """``send`` without blocking: returns a ``Work``; do not modify ``tensor`` until it has completed."""
        g = self._group(group, "send")
        tensor = self._as_tensor(tensor, "isend")
        self._check_tensor(tensor, "send")
        self._check_peer(dst_rank, g, "send", "dst_rank", allow_self=False)
        self._check_tag(tag, "send")
        return self._run("send", self._isend, None, True, tensor, dst_rank, g, tag)

    def irecv(self, tensor: torch.Tensor, src_rank: int, group: Any = None, tag: int = 0) -> Work:
        """``recv`` without blocking: returns a ``Work``; ``tensor`` holds the message once it has completed."""
        g = self._group(group, "recv")
        buf = self._as_tensor(tensor, "irecv", writable=True)
        self._check_tensor(buf, "recv")
        self._check_peer(src_rank, g, "recv", "src_rank", allow_self=False)
        self._check_tag(tag, "recv")
        return self._run("recv", self._irecv, tensor, True, buf, src_rank, g, tag)

    def batch_isend_irecv(self, p2p_ops: Sequence[P2POp]) -> list[Work]:
        """Start several sends and receives at once (a ring exchange, a KV fan-out); wait on the handles (one per
        op, in order). Every op is checked before any starts."""
        if not isinstance(p2p_ops, (list, tuple)):
            raise InvalidArgumentError(f"batch_isend_irecv takes a list of P2POp, got {type(p2p_ops).__name__}")
        if not p2p_ops:
            raise InvalidArgumentError("batch_isend_irecv needs at least one P2POp")
        self._require_op("batch_p2p")
        items: list[tuple[str, torch.Tensor, int, CommGroup, int]] = []
        results = []
        for p in p2p_ops:
            if not all(hasattr(p, a) for a in ("op", "tensor", "peer")):
                raise InvalidArgumentError(
                    f"batch_isend_irecv takes P2POp entries (op, tensor, peer, group, tag), got "
                    f"{type(p).__name__} {p!r}"
                )
            group, tag = getattr(p, "group", None), getattr(p, "tag", 0)
            kind = p.op if isinstance(p.op, str) else getattr(p.op, "__name__", str(p.op))
            if kind not in ("isend", "irecv"):
                raise InvalidArgumentError(f"P2POp.op must be 'isend' or 'irecv', got {p.op!r}")
            op = "send" if kind == "isend" else "recv"
            g = self._group(group, op)
            buf = self._as_tensor(p.tensor, kind, writable=kind == "irecv")
            self._check_tensor(buf, op)
            self._check_peer(p.peer, g, op, "dst_rank" if op == "send" else "src_rank", allow_self=False)
            self._check_tag(tag, op)
            items.append((kind, buf, p.peer, g, tag))
            results.append(None if op == "send" else p.tensor)
        try:
            works = self._batch_p2p(items)
        except CommError:
            raise
        except Exception as exc:
            raise self._translate_error("batch_isend_irecv", exc) from exc
        for work, (kind, buf, *_), result in zip(works, items, results, strict=True):
            work.op, work._result = ("send" if kind == "isend" else "recv"), result
            if work.device is None:
                work.device = buf.device
        return works

    # ------------------------------------------------------------------------------------------------------
    # checks shared by every backend
    # ------------------------------------------------------------------------------------------------------
    def _require_world(self, what: str) -> CommGroup:
        if self._world is None:
            raise NotInitializedError(
                f"{what} called before init: call init_process_group(world_size=..., rank=...) on the "
                f"{self.name} backend first (or run under torchrun and call it with no arguments)"
            )
        return self._world

    def _lookup_group(self, group: CommGroup | str) -> CommGroup:
        self._require_world("group lookup")
        gid = group if isinstance(group, str) else getattr(group, "group_id", None)
        found = self._groups.get(gid) if isinstance(gid, str) else None
        if found is None or (not isinstance(group, str) and found is not group):
            raise GroupNotFoundError(
                f"group {gid!r} is not a live group of this {self.name} backend (destroyed, or created by another "
                f"backend instance); known groups: {sorted(self._groups)}"
            )
        return found

    def _group(self, group: Any, op: str) -> CommGroup:
        if op not in self.capabilities.ops:
            raise self._unsupported(op)
        if group is None:
            return self._require_world(op)
        g = self._lookup_group(group)
        if g.rank < 0:
            raise RankMismatchError(
                f"{op}: this process (global rank {self._global_rank}) is not a member of group {g.group_id} "
                f"(ranks {list(g.global_ranks)}); only members may call ops on it"
            )
        return g

    def _require_op(self, op: str) -> None:
        if op not in self.capabilities.ops:
            raise self._unsupported(op)

    def _unsupported(self, op: str, detail: str = "") -> BackendNotSupportedError:
        return BackendNotSupportedError(
            f"backend {self.name!r} does not support {op}{detail}; it declares ops: "
            f"{', '.join(sorted(self.capabilities.ops))}. Choose another backend (sagellm-comm info lists them)."
        )

    def _check_tensor(self, t: Any, op: str, what: str = "tensor") -> None:
        if not isinstance(t, torch.Tensor):
            raise InvalidArgumentError(f"{op}: {what} must be a torch.Tensor, got {type(t).__name__}")
        caps = self.capabilities
        if t.dtype not in caps.dtypes:
            dts = ", ".join(sorted(str(d).removeprefix("torch.") for d in caps.dtypes))
            raise self._unsupported(op, f" for dtype {t.dtype} (supported dtypes: {dts})")
        if not (t.is_cpu and "cpu" in caps.devices) and t.device.type not in caps.devices:
            raise self._unsupported(op, f" on device {t.device} (supported devices: {sorted(caps.devices)})")
        if not caps.non_contiguous and not t.is_contiguous():
            raise InvalidArgumentError(
                f"{op}: {what} is not contiguous and backend {self.name!r} needs contiguous tensors; "
                "pass tensor.contiguous() and copy the result back"
            )

    def _check_list(self, lst: Any, n: int, like: torch.Tensor, op: str, what: str) -> None:
        if not isinstance(lst, (list, tuple)) or len(lst) != n:
            got = len(lst) if isinstance(lst, (list, tuple)) else type(lst).__name__
            raise InvalidArgumentError(f"{op}: {what} must be a list of {n} tensors (one per rank), got {got}")
        for t in lst:
            self._check_tensor(t, op, what)
            if t.numel() != like.numel() or t.dtype != like.dtype:
                raise InvalidArgumentError(
                    f"{op}: every tensor in {what} must have {like.numel()} elements of {like.dtype}, got "
                    f"{t.numel()} of {t.dtype}"
                )

    @staticmethod
    def _check_sized(big: torch.Tensor, small: torch.Tensor, n: int, op: str, what: str) -> None:
        if big.numel() != n * small.numel() or big.dtype != small.dtype:
            raise InvalidArgumentError(
                f"{op}: {what} must hold world_size x {small.numel()} = {n * small.numel()} elements of "
                f"{small.dtype}, got {big.numel()} of {big.dtype}"
            )

    def _check_peer(self, peer: Any, g: CommGroup, op: str, what: str, *, allow_self: bool) -> None:
        if isinstance(peer, bool) or not isinstance(peer, int):
            raise InvalidArgumentError(f"{op}: {what} must be an int rank, got {peer!r}")
        if not 0 <= peer < g.world_size:
            raise RankMismatchError(
                f"{op}: {what}={peer} is out of range for group {g.group_id} of size {g.world_size} "
                f"(valid 0..{g.world_size - 1}; ranks are group ranks)"
            )
        if not allow_self and peer == g.rank:
            raise RankMismatchError(f"{op}: {what}={peer} is this process's own rank; {op} needs another rank")

    @staticmethod
    def _check_async(async_op: Any, op: str) -> bool:
        """``async_op`` as a bool: True/False, None, 0/1 and numpy bools are read as such; anything else is
        ``INVALID_ARGUMENT`` (engines would otherwise each do something else with it)."""
        if async_op is None or isinstance(async_op, bool):
            return bool(async_op)
        if (isinstance(async_op, int) and async_op in (0, 1)) or type(async_op).__name__ == "bool_":
            return bool(async_op)
        raise InvalidArgumentError(f"{op}: async_op must be True or False, got {async_op!r}")

    def _check_tag(self, tag: Any, op: str) -> None:
        if isinstance(tag, bool) or not isinstance(tag, int) or tag < 0:
            raise InvalidArgumentError(f"{op}: tag must be a non-negative int, got {tag!r}")
        if tag and not self.capabilities.p2p_tags:
            raise self._unsupported(op, " with a non-zero tag")

    def _reduce_op(self, op: Any, tensor: Any, opname: str) -> ReduceOp:
        rop = normalize_reduce_op(op)
        self._check_tensor(tensor, opname)
        if not self.capabilities.supports_reduce(rop, tensor.dtype):
            ok = sorted(o.value for o, dts in self.capabilities.reduce_support.items() if tensor.dtype in dts)
            raise self._unsupported(
                opname,
                f" with op {rop.value} on {tensor.dtype} (ops it reduces "
                f"{tensor.dtype} with: {', '.join(ok) or 'none'})",
            )
        return rop

    @staticmethod
    def _as_tensor(obj: Any, op: str, writable: bool = False) -> Any:
        """Let byte buffers (bytes, bytearray, memoryview) travel as uint8 tensors (the KV engine sends them)."""
        if writable and (isinstance(obj, bytes) or (isinstance(obj, memoryview) and obj.readonly)):
            raise InvalidArgumentError(
                f"{op}: cannot receive into immutable {type(obj).__name__}; pass a "
                "bytearray, a writable memoryview or a tensor"
            )
        if isinstance(obj, memoryview) and not obj.contiguous:
            if writable:
                raise InvalidArgumentError(
                    f"{op}: cannot receive into a non-contiguous memoryview; pass a "
                    "contiguous buffer and copy the bytes where they belong"
                )
            obj = obj.tobytes()  # sent as a copy, as bytes are
        if isinstance(obj, (bytes, bytearray, memoryview)):
            if len(obj) == 0:
                return torch.empty(0, dtype=torch.uint8)
            if isinstance(obj, bytes) or (isinstance(obj, memoryview) and obj.readonly):
                return torch.frombuffer(bytearray(obj), dtype=torch.uint8)
            return torch.frombuffer(obj, dtype=torch.uint8)
        return obj

    def _run(self, op: str, fn: Callable[..., Any], result: Any, async_op: bool, *args: Any) -> Any:
        if async_op and not self.capabilities.async_ops:
            raise self._unsupported(op, " with async_op=True")
        entry = None
        if self.recorder.enabled or self._debug:
            group = None
            for a in args:
                if isinstance(a, CommGroup):
                    group = a
                    break
            entry = self.recorder.start(group, op, args, async_op)
        p2p_check = None
        try:
            if self._debug and group is not None:
                if op not in _P2P_OPS:
                    check_call(self, group, op, args, self._debug_seqs)
                elif not self.engine_checks_p2p:
                    p2p_check = p2p_lane_check(self, op, args, self._debug_p2p)
            work = fn(*args)
            if p2p_check is not None and not async_op:
                p2p_check(None)
        except BaseException as exc:
            error = (
                exc if isinstance(exc, CommError) or not isinstance(exc, Exception) else self._translate_error(op, exc)
            )
            if p2p_check is not None and not isinstance(error, RankMismatchError):
                try:
                    p2p_check(error)
                except RankMismatchError as mismatch:
                    error = mismatch
            self._record_failure(entry, error)
            if error is exc:
                raise
            raise error from exc
        if not async_op:
            self.recorder.finish(entry, "done")
            return result
        if work is None:
            work = CompletedWork(op)
        if p2p_check is not None:
            work.after_completion(lambda: p2p_check(None))
        work.op = op
        work._result = result
        if work.device is None:
            work.device = next((a.device for a in args if isinstance(a, torch.Tensor)), self.device)
        if entry is not None:
            entry[7] = "submitted"
            work.trace(entry, self.recorder)
        return work

    def _record_failure(self, entry: list[Any] | None, error: BaseException) -> None:
        note_failure()
        timed_out = isinstance(error, CommTimeoutError)
        self.recorder.finish(entry, "timeout" if timed_out else "failed", f"{type(error).__name__}: {error}")
        if isinstance(error, CommTimeoutError) and self.recorder.enabled:
            try:
                error.trace_path = str(self.recorder.dump(reason=f"{entry[2] if entry else '?'} timed out"))
            except OSError:
                pass

    def dump_trace(self, path: Any = None) -> Any:
        """Write the flight recorder (this rank's last operations) to ``path`` (default: the trace directory);
        returns the path. ``sagellm-comm trace merge`` lines up the files of all ranks."""
        return self.recorder.dump(path)

    def _translate_error(self, op: str, exc: BaseException) -> CommError:
        """Turn an engine exception into a protocol-coded error. Engines may override to refine."""
        return engine_error(op, exc, self.name)

    # ------------------------------------------------------------------------------------------------------
    # engine methods a plugin implements (only those it declares in its capabilities)
    # ------------------------------------------------------------------------------------------------------
    @abstractmethod
    def _init(self, rendezvous: Rendezvous, options: dict[str, Any]) -> Any:
        """Join the world; return the engine's handle for the world group."""

    @abstractmethod
    def _destroy(self) -> None:
        """Release the world and every group."""

    def _new_group(self, ranks: tuple[int, ...], group_id: str, timeout_s: float) -> Any:
        raise self._unsupported("create_group")

    def _not_implemented(self, op: str) -> BackendNotSupportedError:
        return BackendNotSupportedError(
            f"backend {self.name!r} declares {op} but does not implement it (a bug in "
            "the plugin; report it to its authors)"
        )

    def _all_reduce(self, tensor: torch.Tensor, op: ReduceOp, group: CommGroup, async_op: bool) -> Work | None:
        raise self._not_implemented("all_reduce")

    def _all_gather(
        self, output: list[torch.Tensor], tensor: torch.Tensor, group: CommGroup, async_op: bool
    ) -> Work | None:
        raise self._not_implemented("all_gather")

    def _all_gather_into_tensor(
        self, output: torch.Tensor, tensor: torch.Tensor, group: CommGroup, async_op: bool
    ) -> Work | None:
        raise self._not_implemented("all_gather_into_tensor")

    def _reduce_scatter(
        self, output: torch.Tensor, input: torch.Tensor, op: ReduceOp, group: CommGroup, async_op: bool
    ) -> Work | None:
        raise self._not_implemented("reduce_scatter")

    def _broadcast(self, tensor: torch.Tensor, src: int, group: CommGroup, async_op: bool) -> Work | None:
        raise self._not_implemented("broadcast")

    def _reduce(self, tensor: torch.Tensor, dst: int, op: ReduceOp, group: CommGroup, async_op: bool) -> Work | None:
        raise self._not_implemented("reduce")

    def _gather(
        self, tensor: torch.Tensor, gather_list: list[torch.Tensor] | None, dst: int, group: CommGroup, async_op: bool
    ) -> Work | None:
        raise self._not_implemented("gather")

    def _scatter(
        self, tensor: torch.Tensor, scatter_list: list[torch.Tensor] | None, src: int, group: CommGroup, async_op: bool
    ) -> Work | None:
        raise self._not_implemented("scatter")

    def _all_to_all(
        self, output: list[torch.Tensor], input: list[torch.Tensor], group: CommGroup, async_op: bool
    ) -> Work | None:
        raise self._not_implemented("all_to_all")

    def _all_to_all_single(
        self, output: torch.Tensor, input: torch.Tensor, group: CommGroup, async_op: bool
    ) -> Work | None:
        raise self._not_implemented("all_to_all")

    def _barrier(self, group: CommGroup, async_op: bool, timeout: float | None) -> Work | None:
        raise self._not_implemented("barrier")

    def _send(self, tensor: torch.Tensor, dst: int, group: CommGroup, tag: int) -> None:
        raise self._not_implemented("send")

    def _recv(self, tensor: torch.Tensor, src: int, group: CommGroup, tag: int) -> None:
        raise self._not_implemented("recv")

    def _isend(self, tensor: torch.Tensor, dst: int, group: CommGroup, tag: int) -> Work:
        raise self._not_implemented("isend")

    def _irecv(self, tensor: torch.Tensor, src: int, group: CommGroup, tag: int) -> Work:
        raise self._not_implemented("irecv")

    def _batch_p2p(self, items: list[tuple[str, torch.Tensor, int, CommGroup, int]]) -> list[Work]:
        """Start every ``(kind, tensor, peer, group, tag)`` (kind ``"isend"``/``"irecv"``), one Work per item in
        order. The default starts them one by one; an engine whose sends block until matched (NCCL) overrides it to
        fuse them, or a ring of them deadlocks."""
        return [
            self._isend(t, peer, g, tag) if kind == "isend" else self._irecv(t, peer, g, tag)
            for kind, t, peer, g, tag in items
        ]

    def __repr__(self) -> str:
        state = f"rank {self._global_rank}/{self._world.world_size}" if self._world else "not initialized"
        return f"<{type(self).__name__} {self.name!r} {state}>"
