"""``HierBackend``: the contract over two transports, with two-level collectives chosen by the cost model.

Routing, per call on a group (its :class:`~sagellm_comm.composite.routes.Route`):

- all members on one node: the intra transport (shm), which must declare the op for the dtype and reduce op, else
  the inter transport;
- spread over nodes: all_reduce, all_gather, reduce_scatter and broadcast go ``hierarchical`` or ``flat`` (the inter
  transport's own collective on all members), whichever the cost model predicts faster for the size (see
  :meth:`HierBackend.explain`); the other collectives go flat;
- point to point: the intra transport between ranks of one node, the inter transport otherwise (a pair always uses
  the same one, so messages between two ranks stay in order).

Async collectives on the two-level path run inside the call and return a completed handle (``concurrent_progress``
is not claimed); flat ones and point to point return the transport's own handle.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.algorithms import hierarchical as hier
from sagellm_comm.algorithms.cost import Network, choose
from sagellm_comm.algorithms.hierarchical import NodeLayout
from sagellm_comm.algorithms.p2p import copy_back, flat_view
from sagellm_comm.backend import CommBackend, P2POp
from sagellm_comm.capabilities import ALL_OPS, FLOAT_DTYPES, INT_DTYPES, Capabilities
from sagellm_comm.composite.links import LinkParams, configured_links, job_links, measure_links
from sagellm_comm.composite.routes import Route, build_route
from sagellm_comm.composite.transports import Transports, choose_transports
from sagellm_comm.errors import InvalidArgumentError
from sagellm_comm.group import CommGroup
from sagellm_comm.rendezvous import Rendezvous
from sagellm_comm.work import Work

__all__ = ["ALGO_ENV", "RANKS_PER_NODE_ENV", "Decision", "HierBackend"]

ALGO_ENV = "SAGELLM_COMM_HIER_ALGO"
RANKS_PER_NODE_ENV = "SAGELLM_COMM_HIER_RANKS_PER_NODE"
ALGOS = ("auto", "hierarchical", "flat")
TWO_LEVEL_OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")
MAX_CACHED_DECISIONS = 4096  # per group; a job with more distinct sizes starts the cache over


@dataclass(frozen=True)
class Decision:
    """How one call runs: ``algo`` (intra, flat or hierarchical), the rule that decided, and why."""

    algo: str
    rule_id: str
    reason: str


class HierBackend(CommBackend):
    name = "hier"
    # what every call can do: anything the cross-host transport (gloo) declares, since any call may go there
    capabilities = Capabilities(
        ops=ALL_OPS,
        dtypes=FLOAT_DTYPES | INT_DTYPES | {torch.bool},
        devices=frozenset({"cpu"}),
        reduce_support=Capabilities.reduce_table(FLOAT_DTYPES, INT_DTYPES),
        non_contiguous=True,
        concurrent_progress=False,
    )
    engine_checks_p2p = True  # both transports check their messages (gloo's headers, shm's tags); see _init

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.transports: Transports | None = None
        self.intra: CommBackend | None = None
        self.inter: CommBackend | None = None
        self.links: LinkParams | None = None
        self.nodes: tuple[tuple[int, ...], ...] = ()
        self.last_decision: Decision | None = None
        self._world_node: dict[int, int] = {}
        self._world_local: dict[int, int] = {}
        self._algo = "auto"

    # ------------------------------------------------------------------------------------------------ lifecycle
    def _init(self, rdzv: Rendezvous, options: dict[str, Any]) -> Any:
        self.pin(options.get("algo") or os.environ.get(ALGO_ENV) or "auto")
        self.transports = choose_transports("cpu")
        channel = rdzv.store
        names = self._node_names(channel, rdzv, options)
        self.nodes = hier.group_nodes(names)
        for i, members in enumerate(self.nodes):
            for local, r in enumerate(members):
                self._world_node[r], self._world_local[r] = i, local
        node = self.nodes[self._world_node[rdzv.rank]]
        inner = {k: v for k, v in options.items() if k not in ("algo", "links", "node_ids", "ranks_per_node")}
        self.inter = self.transports.inter.load()(**inner)
        self.intra = self.transports.intra.load()(**inner)
        try:
            self.inter.attach(replace(rdzv, store=channel.scope("inter")))
            local = self._world_local[rdzv.rank]
            self.intra.attach(
                replace(
                    rdzv,
                    rank=local,
                    world_size=len(node),
                    local_rank=local,
                    store=channel.scope(f"intra{self._world_node[rdzv.rank]}"),
                )
            )
            self.links = configured_links(options)
            if self.links is None and len(self.nodes) > 1:

                def measure() -> LinkParams:
                    return measure_links(channel.scope("links"), rdzv.rank, self.nodes, self.intra, self.inter, local)

                self.links = job_links(self.inter, (self.transports.intra.name, self.transports.inter.name), measure)
            self.engine_checks_p2p = self.intra.engine_checks_p2p and self.inter.engine_checks_p2p
            return build_route(
                tuple(range(rdzv.world_size)),
                rdzv.rank,
                self._world_node,
                self._world_local,
                self.intra,
                self.inter,
                self.inter.world_group,
                self.intra.world_group,
            )
        except BaseException:
            self._close_transports()
            raise

    def pin(self, algo: str) -> None:
        """Pin the path of the two-level ops: ``"hierarchical"``, ``"flat"`` or ``"auto"`` (the cost model). Every
        rank must pin alike, before the same call (a benchmark compares the paths with it)."""
        key = str(algo).strip().lower()
        if key not in ALGOS:
            raise InvalidArgumentError(
                f"hier algo {algo!r} (algo=, {ALGO_ENV} or pin()): choose from {', '.join(ALGOS)}"
            )
        self._algo = key

    def _node_names(self, channel: Any, rdzv: Rendezvous, options: dict[str, Any]) -> list[bytes]:
        """Each world rank's node: ``node_ids`` (one per world rank), else ``ranks_per_node`` k (rank r on node
        r // k, torchrun's placement) -- both for tests that simulate nodes on one host and for hosts that share a
        name --, else exchanged through the side channel (SAGELLM_COMM_NODE_ID, else the hostname)."""
        per_node = options.get("ranks_per_node")
        per_node = os.environ.get(RANKS_PER_NODE_ENV) if per_node is None else per_node
        if per_node is not None and options.get("node_ids") is None:
            try:
                k = int(per_node)
                if k < 1:
                    raise ValueError
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    f"hier ranks_per_node (or {RANKS_PER_NODE_ENV}) must be an int >= 1, got {per_node!r}"
                ) from None
            return [str(r // k).encode() for r in range(rdzv.world_size)]
        ids = options.get("node_ids")
        if ids is not None:
            ids = [str(x) for x in (ids.split(",") if isinstance(ids, str) else ids)]
            if len(ids) != rdzv.world_size:
                raise InvalidArgumentError(
                    f"hier node_ids has {len(ids)} entries for a world of {rdzv.world_size}; give one node id per rank"
                )
            return [x.encode() for x in ids]
        return channel.scope("nodes").exchange(
            "names", hier.node_name(), rdzv.rank, rdzv.world_size, what="say which node it is on"
        )

    def _close_transports(self) -> None:
        try:
            if self.intra is not None:
                self.intra.destroy()
        finally:
            if self.inter is not None:
                self.inter.destroy()

    def _destroy(self) -> None:
        self._close_transports()

    def _new_group(self, ranks: tuple[int, ...], group_id: str, timeout_s: float) -> Any:
        assert self.inter is not None
        inter_group = self.inter.create_group(list(ranks), timeout=timeout_s)
        return build_route(
            ranks, self._global_rank, self._world_node, self._world_local, self.intra, self.inter, inter_group, None
        )

    # ------------------------------------------------------------------------------------------------ decisions
    def explain(
        self,
        op: str,
        nbytes: int,
        group: CommGroup | None = None,
        dtype: torch.dtype = torch.float32,
        reduce_op: ReduceOp | str | None = "sum",
    ) -> Decision:
        """How ``op`` on a tensor of ``nbytes`` (all_gather/reduce_scatter: each rank's block) would run on
        ``group`` (default: the world), with the rule and reason. The same inputs give the same decision on every
        rank: the layout and the link parameters are the same everywhere."""
        g = self._require_world("explain") if group is None else self._lookup_group(group)
        rop = (
            None
            if op in ("all_gather", "broadcast", "all_gather_into_tensor") or reduce_op is None
            else self._reduce_op(reduce_op, torch.empty(0, dtype=dtype), op)
        )
        return self._decide(op, nbytes, g.handle, dtype, rop)

    def _decide(self, op: str, nbytes: int, route: Route, dtype: torch.dtype, rop: ReduceOp | None) -> Decision:
        assert self.intra is not None and self.inter is not None and self.transports is not None
        stage_rop = ReduceOp.SUM if rop is ReduceOp.AVG else rop
        if route.one_node:
            if self.intra.capabilities.declares(op, dtype, rop):
                return Decision(
                    "intra",
                    "one-node",
                    f"intra: all {sum(map(len, route.nodes))} ranks on one node; {self.transports.intra.name}",
                )
            return Decision(
                "flat",
                "intra-lacks-op",
                f"flat: {self.transports.intra.name} does not declare {op} for {dtype}; {self.transports.inter.name}",
            )
        base = op.removesuffix("_into_tensor")
        layout = route.layout
        assert layout is not None
        if base not in TWO_LEVEL_OPS:
            return Decision("flat", "not-two-level", f"flat: {op} has no two-level form; {self.transports.inter.name}")
        if base != "all_reduce" and not layout.uniform:
            return Decision(
                "flat",
                "uneven-nodes",
                f"flat: {base} needs equal ranks per node, nodes hold {'/'.join(str(len(n)) for n in layout.nodes)}",
            )
        stages = {
            "all_reduce": ("reduce_scatter", "all_gather_into_tensor") if layout.uniform else ("reduce", "broadcast"),
            "all_gather": ("all_gather_into_tensor",),
            "reduce_scatter": ("reduce_scatter",),
            "broadcast": ("broadcast",),
        }[base]
        if not all(
            self.intra.capabilities.declares(s, dtype, stage_rop if s in ("reduce_scatter", "reduce") else None)
            for s in stages
        ) or not self.inter.capabilities.declares(
            base if base != "all_gather" else "all_gather_into_tensor", dtype, stage_rop
        ):
            return Decision(
                "flat",
                "transport-lacks-op",
                f"flat: the transports do not declare the stages of two-level {base} for {dtype}",
            )
        if self._algo != "auto":
            return Decision(self._algo, "pinned", f"{self._algo}: pinned (algo=, {ALGO_ENV} or pin())")
        if layout.ranks_per_node == 1:
            return Decision("flat", "one-rank-per-node", "flat: one rank per node, nothing to do inside nodes")
        assert self.links is not None
        net = Network(
            nodes=len(layout.nodes),
            ranks_per_node=layout.ranks_per_node,
            intra=self.links.intra,
            inter=self.links.inter,
            gamma_s_per_byte=self.links.gamma,
        )
        algo, why = choose(nbytes, net, ("flat", "hierarchical"), op=base)
        if not layout.uniform:
            why += (
                f" (nodes of {'/'.join(str(len(n)) for n in layout.nodes)} ranks: the leader variant, modelled "
                "as equal nodes of the largest size)"
            )
        return Decision(algo, "cost-model", f"{why}; links: {self.links.describe()}")

    def _route(
        self, op: str, group: CommGroup, t: torch.Tensor, rop: ReduceOp | None, nbytes: int | None = None
    ) -> tuple[Decision, Route]:
        route: Route = group.handle
        size = t.numel() * t.element_size() if nbytes is None else nbytes
        key = (op, size, t.dtype, rop, self._algo)
        d = route.decisions.get(key)
        if d is None:
            if len(route.decisions) >= MAX_CACHED_DECISIONS:
                route.decisions.clear()
            d = route.decisions[key] = self._decide(op, size, route, t.dtype, rop)
        self.last_decision = d
        return d, route

    # --------------------------------------------------------------------------------------------- collectives
    def _by_decision(
        self,
        d: Decision,
        route: Route,
        one_level: Callable[[Any, CommGroup], Any],
        two_level: Callable[[NodeLayout], None],
    ) -> Work | None:
        """``one_level(transport, its group)`` on the transport the decision names, or ``two_level(layout)`` (which
        runs inside the call)."""
        if d.algo == "hierarchical":
            assert route.layout is not None
            two_level(route.layout)
            return None
        comm, g = (self.intra, route.intra) if d.algo == "intra" else (self.inter, route.inter)
        return one_level(comm, g)

    def _all_reduce(self, tensor: torch.Tensor, op: ReduceOp, group: CommGroup, async_op: bool) -> Work | None:
        d, route = self._route("all_reduce", group, tensor, op)
        return self._by_decision(
            d,
            route,
            lambda c, g: c.all_reduce(tensor, op=op, group=g, async_op=async_op),
            lambda lay: _in_place(tensor, lambda flat: hier.layout_all_reduce(lay, flat, op)),
        )

    def _all_gather_into_tensor(
        self, output: torch.Tensor, tensor: torch.Tensor, group: CommGroup, async_op: bool
    ) -> Work | None:
        d, route = self._route("all_gather_into_tensor", group, tensor, None)
        return self._by_decision(
            d,
            route,
            lambda c, g: c.all_gather_into_tensor(output, tensor, group=g, async_op=async_op),
            lambda lay: _in_place(output, lambda out: hier.layout_all_gather(lay, out, tensor.reshape(-1))),
        )

    def _all_gather(
        self, output: list[torch.Tensor], tensor: torch.Tensor, group: CommGroup, async_op: bool
    ) -> Work | None:
        d, route = self._route("all_gather", group, tensor, None)

        def two_level(layout: NodeLayout) -> None:
            staged = torch.empty((group.world_size, tensor.numel()), dtype=tensor.dtype, device=tensor.device)
            hier.layout_all_gather(layout, staged.view(-1), tensor.reshape(-1))
            for dst, src in zip(output, staged, strict=True):
                dst.copy_(src.view(tensor.shape))

        return self._by_decision(
            d, route, lambda c, g: c.all_gather(tensor, group=g, async_op=async_op, output=output), two_level
        )

    def _reduce_scatter(
        self, output: torch.Tensor, input: torch.Tensor, op: ReduceOp, group: CommGroup, async_op: bool
    ) -> Work | None:
        d, route = self._route("reduce_scatter", group, output, op)
        return self._by_decision(
            d,
            route,
            lambda c, g: c.reduce_scatter(output, input, op=op, group=g, async_op=async_op),
            lambda lay: _in_place(output, lambda out: hier.layout_reduce_scatter(lay, out, input.reshape(-1), op)),
        )

    def _broadcast(self, tensor: torch.Tensor, src: int, group: CommGroup, async_op: bool) -> Work | None:
        d, route = self._route("broadcast", group, tensor, None)
        return self._by_decision(
            d,
            route,
            lambda c, g: c.broadcast(tensor, src_rank=self._root(c, route, src), group=g, async_op=async_op),
            lambda lay: _in_place(tensor, lambda flat: hier.layout_broadcast(lay, flat, src)),
        )

    def _one_level(
        self, op: str, group: CommGroup, t: torch.Tensor | None, rop: ReduceOp | None = None
    ) -> tuple[Any, CommGroup, Route]:
        """The transport for ops without a two-level form: intra on one node when it declares the op, else inter."""
        assert self.intra is not None and self.inter is not None and self.transports is not None
        route: Route = group.handle
        dtype = t.dtype if t is not None else torch.uint8
        if route.one_node and self.intra.capabilities.declares(op, dtype, rop):
            self.last_decision = Decision("intra", "one-node", f"intra: {op} on one node")
            return self.intra, route.intra, route
        self.last_decision = Decision("flat", "not-two-level", f"flat: {op} on {self.transports.inter.name}")
        return self.inter, route.inter, route

    def _root(self, comm: Any, route: Route, root: int) -> int:
        return route.local[root] if comm is self.intra else root

    def _reduce(self, tensor: torch.Tensor, dst: int, op: ReduceOp, group: CommGroup, async_op: bool) -> Work | None:
        comm, g, route = self._one_level("reduce", group, tensor, op)
        return comm.reduce(tensor, dst_rank=self._root(comm, route, dst), op=op, group=g, async_op=async_op)

    def _gather(
        self, tensor: torch.Tensor, gather_list: list[torch.Tensor] | None, dst: int, group: CommGroup, async_op: bool
    ) -> Work | None:
        comm, g, route = self._one_level("gather", group, tensor)
        return comm.gather(tensor, gather_list, dst_rank=self._root(comm, route, dst), group=g, async_op=async_op)

    def _scatter(
        self, tensor: torch.Tensor, scatter_list: list[torch.Tensor] | None, src: int, group: CommGroup, async_op: bool
    ) -> Work | None:
        comm, g, route = self._one_level("scatter", group, tensor)
        return comm.scatter(tensor, scatter_list, src_rank=self._root(comm, route, src), group=g, async_op=async_op)

    def _all_to_all(
        self, output: list[torch.Tensor], input: list[torch.Tensor], group: CommGroup, async_op: bool
    ) -> Work | None:
        comm, g, _ = self._one_level("all_to_all", group, input[0] if input else None)
        return comm.all_to_all(output, input, group=g, async_op=async_op)

    def _all_to_all_single(
        self, output: torch.Tensor, input: torch.Tensor, group: CommGroup, async_op: bool
    ) -> Work | None:
        comm, g, _ = self._one_level("all_to_all", group, input)
        return comm.all_to_all(output, input, group=g, async_op=async_op)

    def _barrier(self, group: CommGroup, async_op: bool, timeout: float | None) -> Work | None:
        comm, g, _ = self._one_level("barrier", group, None)
        return comm.barrier(group=g, async_op=async_op, timeout=timeout)

    # ------------------------------------------------------------------------------------------ point to point
    def _peer(self, op: str, group: CommGroup, peer: int, t: torch.Tensor) -> tuple[Any, CommGroup, int]:
        assert self.intra is not None and self.inter is not None
        route: Route = group.handle
        if peer in route.local and self.intra.capabilities.declares(op, t.dtype, None):
            return self.intra, route.intra, route.local[peer]
        return self.inter, route.inter, peer

    def _send(self, tensor: torch.Tensor, dst: int, group: CommGroup, tag: int) -> None:
        comm, g, peer = self._peer("send", group, dst, tensor)
        comm.send(tensor, peer, group=g, tag=tag)

    def _recv(self, tensor: torch.Tensor, src: int, group: CommGroup, tag: int) -> None:
        comm, g, peer = self._peer("recv", group, src, tensor)
        comm.recv(tensor, peer, group=g, tag=tag)

    def _isend(self, tensor: torch.Tensor, dst: int, group: CommGroup, tag: int) -> Work:
        comm, g, peer = self._peer("send", group, dst, tensor)
        return comm.isend(tensor, peer, group=g, tag=tag)

    def _irecv(self, tensor: torch.Tensor, src: int, group: CommGroup, tag: int) -> Work:
        comm, g, peer = self._peer("recv", group, src, tensor)
        return comm.irecv(tensor, peer, group=g, tag=tag)

    def _batch_p2p(self, items: list[tuple[str, torch.Tensor, int, CommGroup, int]]) -> list[Work]:
        """Split by transport, each transport's share as one batch (or one by one where it has none)."""
        shares: dict[int, tuple[Any, list[int], list[P2POp]]] = {}
        for i, (kind, buf, peer, group, tag) in enumerate(items):
            comm, g, p = self._peer("send" if kind == "isend" else "recv", group, peer, buf)
            entry = shares.setdefault(id(comm), (comm, [], []))
            entry[1].append(i)
            entry[2].append(P2POp(kind, buf, p, g, tag))
        works: list[Any] = [None] * len(items)
        for comm, positions, ops in shares.values():
            if "batch_p2p" in comm.capabilities.ops:
                got = comm.batch_isend_irecv(ops)
            else:
                got = [
                    (comm.isend if o.op == "isend" else comm.irecv)(o.tensor, o.peer, group=o.group, tag=o.tag)
                    for o in ops
                ]
            for pos, w in zip(positions, got, strict=True):
                works[pos] = w
        return works


def _in_place(tensor: torch.Tensor, fn: Callable[[torch.Tensor], None]) -> None:
    """``fn`` on a flat contiguous view of ``tensor`` (a copy when it is not contiguous), written back."""
    flat = flat_view(tensor)
    fn(flat)
    copy_back(tensor, flat)
