"""``MemoryBackend``: the contract over :class:`~sagellm_comm_cxl_ub.engine.RegionEngine`, one region per group.

Subclasses only say where regions come from (``_provider``): ``shm`` (POSIX shared memory), ``cxl`` (CXL-backed
memory), ``ub`` (a UB segment). Group setup: group rank 0 makes a region under a fresh random key and publishes
its handle through the group's side channel (the store the core hands every backend); the others map it, check its
header, record their pid; the last rank to map it removes its name, so from then on only the mappings keep it alive
and a crash leaves nothing behind.

Every group runs one engine path, the same on all its ranks: each rank records in the region the path it can run
(``engine_path``: the native library where it loaded, else Python), and a group runs native only if all of them
can; ``engine="native"`` makes a group that cannot an error instead.

Each group's collectives go through an :class:`~sagellm_comm_cxl_ub.progress.OpQueue`: blocking calls run inline,
``async_op=True`` runs on the group's progress thread and returns at once (``concurrent_progress``); isend/irecv
are driven by the P2P engine's own thread.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import socket
import struct
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.backend import CommBackend
from sagellm_comm.capabilities import ALL_OPS, FLOAT_DTYPES, INT_DTYPES, Capabilities
from sagellm_comm.errors import BackendNotSupportedError, CommError, GroupInvalidError
from sagellm_comm.group import CommGroup
from sagellm_comm.rendezvous import Rendezvous
from sagellm_comm.store import SideChannel
from sagellm_comm.work import FutureWork
from sagellm_comm_cxl_ub import native
from sagellm_comm_cxl_ub.config import MemoryConfig
from sagellm_comm_cxl_ub.engine import NATIVE_SPLIT_MIN_BYTES, RegionEngine
from sagellm_comm_cxl_ub.layout import ENGINE_NATIVE, ENGINE_PYTHON, MAGIC, VERSION, Layout
from sagellm_comm_cxl_ub.p2p import P2PEngine, P2PWork
from sagellm_comm_cxl_ub.probes import engine_path
from sagellm_comm_cxl_ub.progress import CLOSE_WAIT_S, OpQueue
from sagellm_comm_cxl_ub.regions.base import Region, RegionProvider
from sagellm_comm_cxl_ub.sync import StepCounters

__all__ = ["GroupState", "MemoryBackend"]


def _host_identity() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


@dataclass
class GroupState:
    region: Region
    layout: Layout
    engine: RegionEngine
    p2p: P2PEngine
    counters: StepCounters
    queue: OpQueue
    engine_reason: str = ""

    def close(self) -> None:
        self.counters.abort()  # an async op still waiting for a peer gives up, so its thread can be joined
        if not self.queue.close():
            # the progress thread is still inside the region: unmapping it now would crash the process; the name is
            # already gone, so the memory is returned when the process exits
            warnings.warn(
                f"{self.counters.group_id}: an async op did not stop within "
                f"{CLOSE_WAIT_S:.0f}s of destroy(); its shared region stays mapped until the process exits",
                RuntimeWarning,
                stacklevel=3,
            )
            return
        self.p2p.close()
        self.counters.release()
        self.engine.close()
        self.region.close()


def _tagged(
    st: GroupState,
    fn: Callable[[GroupState], None],
    op: str,
    dtype: torch.dtype | None,
    size: int,
    root: int,
    reduce_op: ReduceOp | None,
) -> None:
    """Run ``fn`` on the group's engine with its steps tagged by the call's signature."""
    st.engine.expect(op, dtype, size, root, reduce_op)
    fn(st)


class MemoryBackend(CommBackend):
    name: ClassVar[str] = "memory"
    engine_checks_p2p: ClassVar[bool] = True  # every message carries its dtype and size (p2p.py)
    capabilities = Capabilities(
        ops=ALL_OPS,
        dtypes=FLOAT_DTYPES | INT_DTYPES,
        devices=frozenset({"cpu"}),
        reduce_support=Capabilities.reduce_table(FLOAT_DTYPES, INT_DTYPES),
        non_contiguous=True,
        concurrent_progress=True,
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.config: MemoryConfig | None = None
        self._provider_obj: RegionProvider | None = None
        self._states: list[GroupState] = []
        self._index = itertools.count()

    # ---------------------------------------------------------------------------------------- subclass hook
    def _provider(self, config: MemoryConfig) -> RegionProvider:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------- lifecycle
    def _init(self, rendezvous: Rendezvous, options: dict[str, Any]) -> Any:
        self.config = MemoryConfig.from_options(options)
        provider = self._provider(self.config)
        ok, why = provider.available()
        if not ok:
            raise BackendNotSupportedError(f"{self.name}: {why}")
        path, why = engine_path(self.config)
        if path is None:
            raise BackendNotSupportedError(f"{self.name}: {why}")
        self._engine = (path, why)
        self._provider_obj = provider
        self._rank = rendezvous.rank
        self._timeout_s = rendezvous.timeout_s
        try:
            return self._setup(
                tuple(range(rendezvous.world_size)),
                "world",
                rendezvous.timeout_s,
                rendezvous.store.scope("groups/world"),
            )
        except BaseException:
            self._release_all()
            raise

    def _destroy(self) -> None:
        self._release_all()

    def _release_all(self) -> None:
        for st in self._states:
            st.close()
        self._states = []

    def _new_group(self, ranks: tuple[int, ...], group_id: str, timeout_s: float) -> Any:
        return self._setup(ranks, group_id, timeout_s, self.group_channel(group_id, timeout_s))

    # --------------------------------------------------------------------------------------- group setup
    def _setup(
        self, members: tuple[int, ...], group_id: str, timeout_s: float, channel: SideChannel
    ) -> GroupState | None:
        index = next(self._index)
        assert self.config is not None and self._provider_obj is not None
        provider = self._provider_obj
        n = len(members)
        sizes = [Layout(n, slot, self.config.chunk_bytes).size for slot in self.config.slot_choices()]
        provider.reserve(index, max(sizes))
        if self._rank not in members:
            return None
        me = members.index(self._rank)
        host_local = provider.host_local
        if n > 1:
            same_host = self._same_host(channel, members, me)
            if provider.host_local and not same_host:
                raise BackendNotSupportedError(
                    f"{self.name} joins ranks of one host only, but the ranks of group {group_id} are on several "
                    "hosts; use gloo across hosts (or cxl with a CXL pool every host shares)"
                )
            host_local = same_host
        # group rank 0 sizes the region; the others take its layout from what it publishes
        layout = Layout(n, self.config.slot_for(n if host_local else 1), self.config.chunk_bytes)
        mine = ENGINE_NATIVE + native.ABI_VERSION if self._engine[0] == "native" else ENGINE_PYTHON
        region, layout = self._make_region(provider, layout, channel, members, me, index, mine)
        try:
            pids = self._read_pids(region, layout, n)
            engines = [
                struct.unpack_from("<i", region.mapping, region.offset + layout.engine_word(r))[0] for r in range(n)
            ]
            use_native, reason = self._group_engine(engines, members, group_id)
            mm = region.mapping
            base = torch.frombuffer(mm, dtype=torch.uint8)[region.offset : region.offset + layout.size]
            spin, yld = self.config.wait_budget(n if host_local else 1)
            counters = StepCounters(
                mm,
                region.offset,
                [layout.step_word(r) for r in range(n)],
                me,
                list(members),
                pids,
                host_local,
                spin,
                timeout_s,
                group_id,
                yield_s=yld,
            )
            engine = RegionEngine(base, layout, me, counters)
            engine.algo = self.config.allreduce
            addr = ctypes.addressof(ctypes.c_char.from_buffer(mm)) + region.offset
            if use_native:
                engine.bind_native(
                    native.make_group(addr, layout, me, pids, host_local, spin, yld, timeout_s, NATIVE_SPLIT_MIN_BYTES)
                )
            p2p = P2PEngine(
                mm, base, region.offset, addr, layout, me, list(members), group_id, timeout_s, exited=counters.exited
            )
        except BaseException:
            region.close()
            raise
        state = GroupState(region, layout, engine, p2p, counters, OpQueue(f"{self.name}-{group_id}"), reason)
        self._states.append(state)
        return state

    def _group_engine(self, engines: list[int], members: tuple[int, ...], group_id: str) -> tuple[bool, str]:
        """Whether the group runs native (every rank recorded the native code of this ABI), and why."""
        assert self.config is not None
        path, why = self._engine
        want = ENGINE_NATIVE + native.ABI_VERSION
        others = [members[r] for r, code in enumerate(engines) if code != want]
        if path == "native" and not others:
            return True, why
        if path == "native":
            text = (
                f"group {group_id}: rank(s) {others} cannot run the native engine (not built there, another ABI, "
                "or SAGELLM_COMM_SHM_ENGINE=python), so the whole group runs the Python engine"
            )
            if self.config.engine == "native":
                raise BackendNotSupportedError(f"{self.name}: engine=native was asked for, but {text}")
            return False, text
        return False, why

    def engine_path(self, group: CommGroup | None = None) -> tuple[str, str]:
        """("native" or "python", why) of ``group`` (default: the world group)."""
        st = self._state(group if group is not None else self.world_group)
        return st.engine.path, st.engine_reason

    @staticmethod
    def _same_host(channel: SideChannel, members: tuple[int, ...], me: int) -> bool:
        ident = _host_identity()
        hosts = channel.exchange("host", ident, me, len(members), names=members, what="announce its host")
        return all(h.decode() == ident for h in hosts)

    def _make_region(
        self,
        provider: RegionProvider,
        layout: Layout,
        channel: SideChannel,
        members: tuple[int, ...],
        me: int,
        index: int,
        engine_code: int,
    ) -> tuple[Region, Layout]:
        n = len(members)
        if me == 0:
            key = uuid.uuid4().hex
            region = provider.create(key, layout.size, index)
            try:
                mm, o = region.mapping, region.offset
                mm[o : o + layout.slots_off] = bytes(layout.slots_off)  # a reused device window starts clean
                struct.pack_into("<QIIQQ", mm, o, MAGIC, VERSION, n, layout.slot_bytes, layout.chunk_bytes)
                mm[o + layout.token_off : o + layout.token_off + 32] = key.encode()
            except BaseException:
                provider.release_name(region)
                region.close()
                raise
            if n > 1:
                channel.set("region", f"{region.handle}|{key}|{layout.slot_bytes}|{layout.chunk_bytes}")
        else:
            published = channel.get("region", owner=f"rank {members[0]}", what="publish the group's region")
            handle, key, slot, chunk = published.decode().rsplit("|", 3)
            layout = Layout(n, int(slot), int(chunk))
            region = provider.attach(handle, layout.size, index)
            self._check_header(region, layout, n, key)
        struct.pack_into("<q", region.mapping, region.offset + layout.pids_off + 8 * me, os.getpid())
        struct.pack_into("<i", region.mapping, region.offset + layout.engine_word(me), engine_code)
        if n == 1:
            provider.release_name(region)
            return region, layout
        try:
            channel.set(f"mapped/{me}", "1")
            if channel.add("mapped", 1) == n:
                provider.release_name(region)
            channel.wait(
                [f"mapped/{r}" for r in range(n)], owners=[f"rank {m}" for m in members], what="map the region"
            )
        except BaseException:
            provider.release_name(region)  # nobody may be left to remove it
            region.close()
            raise
        provider.release_name(region)  # idempotent: every rank makes sure the name is gone
        return region, layout

    @staticmethod
    def _check_header(region: Region, layout: Layout, n: int, key: str) -> None:
        magic, version, world, slot, chunk = struct.unpack_from("<QIIQQ", region.mapping, region.offset)
        token = bytes(region.mapping[region.offset + layout.token_off : region.offset + layout.token_off + 32])
        if (magic, version, world, slot, chunk) != (
            MAGIC,
            VERSION,
            n,
            layout.slot_bytes,
            layout.chunk_bytes,
        ) or token != key.encode():
            region.close()
            raise GroupInvalidError(
                f"region {region.handle} does not hold this group (header {magic:#x} v{version}, {world} ranks, slot "
                f"{slot}, chunk {chunk}): another job overwrote it, or ranks were given different region settings"
            )

    @staticmethod
    def _read_pids(region: Region, layout: Layout, n: int) -> list[int]:
        return list(struct.unpack_from(f"<{n}q", region.mapping, region.offset + layout.pids_off))

    # ------------------------------------------------------------------------------------------- plumbing
    @staticmethod
    def _state(group: CommGroup) -> GroupState:
        return group.handle  # type: ignore[no-any-return]

    @staticmethod
    def _byte_views(tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[Any]]:
        views, backs = [], []
        for t in tensors:
            if t.is_contiguous():  # as_strided: a 0/1-element tensor may keep an odd stride through reshape
                views.append(t.as_strided((t.numel(),), (1,)).view(torch.uint8))
            else:
                tmp = t.contiguous()
                views.append(tmp.reshape(-1).view(torch.uint8))
                backs.append((t, tmp))
        return views, backs

    @staticmethod
    def _copy_back(backs: list[Any]) -> None:
        for t, tmp in backs:
            t.copy_(tmp)

    def _submit(
        self,
        op: str,
        group: CommGroup,
        async_op: bool,
        fn: Callable[[GroupState], None],
        tensor: torch.Tensor | None = None,
        root: int = -1,
        reduce_op: ReduceOp | None = None,
        numel: int | None = None,
    ) -> FutureWork | None:
        """Run ``fn`` on the group's engine: inline (blocking call) or on its progress thread (``async_op``). The
        call's signature (op, ``tensor``'s dtype and size, root, reduce op) tags its steps: ranks that disagree
        raise ``COMM_RANK_MISMATCH`` instead of exchanging data."""
        st = self._state(group)
        size = numel if numel is not None else (tensor.numel() if tensor is not None else -1)
        dtype = tensor.dtype if tensor is not None else None
        if not async_op:  # no closures on this path: a small all_reduce's whole budget is a few microseconds
            st.queue.run(_tagged, st, fn, op, dtype, size, root, reduce_op)
            return None

        def call(st: GroupState) -> None:
            _tagged(st, fn, op, dtype, size, root, reduce_op)

        def job() -> None:
            try:
                call(st)
            except CommError:
                raise
            except Exception as exc:
                raise self._translate_error(op, exc) from exc

        return FutureWork(op, st.queue.submit(job))

    # ------------------------------------------------------------------------------------------ collectives
    def _all_reduce(self, tensor: torch.Tensor, op: ReduceOp, group: CommGroup, async_op: bool) -> Any:
        if not async_op:  # the hot op of tensor-parallel decoding: straight to the engine (what _submit does)
            st = self._state(group)
            st.queue.run(st.engine.tagged_all_reduce, tensor, op)
            return None
        return self._submit(
            "all_reduce", group, async_op, lambda st: st.engine.all_reduce(tensor, op), tensor, reduce_op=op
        )

    def _all_gather(self, output: list[torch.Tensor], tensor: torch.Tensor, group: CommGroup, async_op: bool) -> Any:
        def run(st: GroupState) -> None:
            views, backs = self._byte_views(output)
            st.engine.all_gather_into(views, tensor)
            self._copy_back(backs)

        return self._submit("all_gather", group, async_op, run, tensor)

    def _all_gather_into_tensor(
        self, output: torch.Tensor, tensor: torch.Tensor, group: CommGroup, async_op: bool
    ) -> Any:
        return self._submit(
            "all_gather_into_tensor", group, async_op, lambda st: st.engine.all_gather_tensor(output, tensor), tensor
        )

    def _reduce_scatter(
        self, output: torch.Tensor, input: torch.Tensor, op: ReduceOp, group: CommGroup, async_op: bool
    ) -> Any:
        return self._submit(
            "reduce_scatter",
            group,
            async_op,
            lambda st: st.engine.reduce_scatter(output, input, op),
            output,
            reduce_op=op,
        )

    def _broadcast(self, tensor: torch.Tensor, src: int, group: CommGroup, async_op: bool) -> Any:
        return self._submit("broadcast", group, async_op, lambda st: st.engine.broadcast(tensor, src), tensor, src)

    def _reduce(self, tensor: torch.Tensor, dst: int, op: ReduceOp, group: CommGroup, async_op: bool) -> Any:
        return self._submit("reduce", group, async_op, lambda st: st.engine.reduce(tensor, dst, op), tensor, dst, op)

    def _gather(
        self, tensor: torch.Tensor, gather_list: list[torch.Tensor] | None, dst: int, group: CommGroup, async_op: bool
    ) -> Any:
        def run(st: GroupState) -> None:
            views, backs = self._byte_views(gather_list) if gather_list is not None else (None, [])
            st.engine.gather(tensor, views, dst)
            self._copy_back(backs)

        return self._submit("gather", group, async_op, run, tensor, dst)

    def _scatter(
        self, tensor: torch.Tensor, scatter_list: list[torch.Tensor] | None, src: int, group: CommGroup, async_op: bool
    ) -> Any:
        def run(st: GroupState) -> None:
            views = self._byte_views(scatter_list)[0] if scatter_list is not None else None
            st.engine.scatter(tensor, views, src)

        return self._submit("scatter", group, async_op, run, tensor, src)

    def _all_to_all(
        self, output: list[torch.Tensor], input: list[torch.Tensor], group: CommGroup, async_op: bool
    ) -> Any:
        def run(st: GroupState) -> None:
            outs, backs = self._byte_views(output)
            ins = self._byte_views(input)[0]
            st.engine.all_to_all(outs, ins)
            self._copy_back(backs)

        # per-peer sizes of the list form may differ between ranks: only the op and dtype are compared
        return self._submit("all_to_all", group, async_op, run, input[0] if input else None, numel=-1)

    def _all_to_all_single(self, output: torch.Tensor, input: torch.Tensor, group: CommGroup, async_op: bool) -> Any:
        n = group.world_size

        def run(st: GroupState) -> None:
            out = output if output.is_contiguous() else output.contiguous()
            src = input.contiguous()
            ob = out.as_strided((out.numel(),), (1,)).view(torch.uint8)
            ib = src.as_strided((src.numel(),), (1,)).view(torch.uint8)
            k = ob.numel() // n
            st.engine.all_to_all(
                [ob[i * k : (i + 1) * k] for i in range(n)], [ib[i * k : (i + 1) * k] for i in range(n)]
            )
            if out is not output:
                output.copy_(out)

        return self._submit("all_to_all", group, async_op, run, input)

    def _barrier(self, group: CommGroup, async_op: bool, timeout: float | None) -> Any:
        return self._submit("barrier", group, async_op, lambda st: st.engine.barrier(timeout))

    # ------------------------------------------------------------------------------------------------ p2p
    def _send(self, tensor: torch.Tensor, dst: int, group: CommGroup, tag: int) -> None:
        p2p = self._state(group).p2p
        p2p.run(p2p.post("send", dst, tensor, background=False, tag=tag), None)

    def _recv(self, tensor: torch.Tensor, src: int, group: CommGroup, tag: int) -> None:
        p2p = self._state(group).p2p
        p2p.run(p2p.post("recv", src, tensor, background=False, tag=tag), None)

    def _isend(self, tensor: torch.Tensor, dst: int, group: CommGroup, tag: int) -> P2PWork:
        p2p = self._state(group).p2p
        return P2PWork("send", p2p, p2p.post("send", dst, tensor, background=True, tag=tag))

    def _irecv(self, tensor: torch.Tensor, src: int, group: CommGroup, tag: int) -> P2PWork:
        p2p = self._state(group).p2p
        return P2PWork("recv", p2p, p2p.post("recv", src, tensor, background=True, tag=tag))

    # ------------------------------------------------------------------------------------------- reporting
    def memory_bytes(self) -> int:
        """Bytes of shared regions this process has mapped now (all groups)."""
        return sum(st.layout.size for st in self._states)
