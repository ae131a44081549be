"""``hierarchical``: collectives that send each byte across nodes once, for ranks spread over several hosts.

A flat ring over ranks on N nodes crosses every node boundary with 2((p-1)/p) n bytes; this sends n (per node,
summed over its local ranks) through the slow links, the bound the two-level scheme reaches:

1. inside each node, a reduce-scatter: local rank k ends with the node's sum of chunk k of L;
2. across nodes, all_reduce of chunk k among the ranks with local rank k (L independent streams, one per local
   rank, each over its own NIC path);
3. inside each node, an all-gather of the L finished chunks.

Buffers above 4 MiB go through the three stages in segments (~2 MiB, at most 8): while one segment crosses the nodes
(an async collective on the cross-node group), the next is reduced inside the node.

When the nodes hold different numbers of ranks the chunks cannot be matched; then the leader variant runs: reduce to
local rank 0 inside each node, all_reduce among the leaders, broadcast inside each node.

The same two levels serve the other collectives (equal node sizes; otherwise the flat ring/tree):

- all_gather: all-gather across nodes among the ranks of each local rank (each rank's block crosses each node
  boundary once), then all-gather of those N blocks inside the node, then one reorder into rank order;
- reduce_scatter: the mirror image (reorder, reduce-scatter inside the node, reduce-scatter across nodes);
- broadcast: across nodes among the ranks with the root's local rank, then inside every node from that rank.

The stages run on a :class:`NodeLayout`, which names the backend of each level: here both are the calling backend
(its sub-groups); the composite ``hier`` backend (:mod:`sagellm_comm.composite`) passes a node-local transport
(shared memory) for the first and a cross-host one (gloo) for the second.

Nodes are told apart by hostname (exchanged once through the side channel; ``SAGELLM_COMM_NODE_ID`` overrides it, so
a test can simulate nodes). The node and cross-node groups are created once per backend, collectively: every rank of
the world calls the first hierarchical all_reduce, so it runs on the world group only. Each stage uses the backend's
own collective where it declares it for the dtype and reduce op, else the composite ring/tree over send/recv.
"""

from __future__ import annotations

import os
import socket
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.algorithms import ring, tree
from sagellm_comm.algorithms.base import Algorithm
from sagellm_comm.algorithms.p2p import copy_back, finish_reduce_, flat_view, reduce_op_for, world_of
from sagellm_comm.errors import BackendNotSupportedError
from sagellm_comm.group import CommGroup

__all__ = [
    "ALGORITHM",
    "NODE_ID_ENV",
    "NodeLayout",
    "layout_all_gather",
    "layout_all_reduce",
    "layout_broadcast",
    "layout_reduce_scatter",
    "node_layout",
    "node_name",
]

NODE_ID_ENV = "SAGELLM_COMM_NODE_ID"
SEGMENT_BYTES = 2 << 20  # pipeline segments of about this size ...
MAX_SEGMENTS = 8  # ... at most this many


@dataclass(frozen=True)
class NodeLayout:
    """Where this rank sits in a group spread over nodes.

    ``nodes[i]`` = the group ranks on node i (ascending; nodes in order of their lowest rank); ``intra`` = this
    node's ranks as a group of ``intra_comm``; ``cross`` = the ranks with this rank's local rank on every node, as a
    group of ``cross_comm``. Both comms are the same backend when the algorithm runs on one backend's sub-groups.
    """

    nodes: tuple[tuple[int, ...], ...]
    node: int
    local_rank: int
    intra: CommGroup
    cross: CommGroup
    intra_comm: Any = None
    cross_comm: Any = None

    @property
    def uniform(self) -> bool:
        return len({len(n) for n in self.nodes}) == 1

    @property
    def ranks_per_node(self) -> int:
        return max(len(n) for n in self.nodes)

    def cross_members(self, k: int) -> tuple[int, ...]:
        """The group ranks with local rank ``k``, in the cross group's rank order (ascending)."""
        return tuple(sorted(m[k] for m in self.nodes if k < len(m)))

    def order(self) -> torch.Tensor:
        """Equal node sizes: ``order[k * N + i]`` = the group rank at position ``i`` of cross group ``k`` (the
        layout of the all-gather's staging buffer)."""
        L = self.ranks_per_node
        return torch.tensor([r for k in range(L) for r in self.cross_members(k)], dtype=torch.long)


# keyed by the world group object: a backend destroyed and initialized again gets a new world and new node groups
_LAYOUTS: weakref.WeakKeyDictionary[CommGroup, NodeLayout] = weakref.WeakKeyDictionary()


def node_name() -> str:
    return os.environ.get(NODE_ID_ENV) or socket.gethostname()


def group_nodes(names: list[bytes] | list[str]) -> tuple[tuple[int, ...], ...]:
    """Ranks grouped by node name, nodes in order of their lowest rank."""
    order: dict[Any, list[int]] = {}
    for rank, name in enumerate(names):
        order.setdefault(name, []).append(rank)
    return tuple(tuple(r) for r in order.values())


def make_groups(
    nodes: tuple[tuple[int, ...], ...], me: int, make_intra: Any, make_cross: Any
) -> tuple[int, int, Any, Any]:
    """(node, local rank, intra group, cross group) for group rank ``me``; ``make_intra(node index, members)`` and
    ``make_cross(members)`` are called for every node and every local rank, in the same order on every rank."""
    node = next(i for i, members in enumerate(nodes) if me in members)
    local = nodes[node].index(me)
    intra = cross = None
    for i, members in enumerate(nodes):
        g = make_intra(i, members)
        if i == node:
            intra = g
    for k in range(max(len(m) for m in nodes)):
        g = make_cross(sorted(m[k] for m in nodes if k < len(m)))
        if k == local:
            cross = g
    return node, local, intra, cross


def node_layout(comm: Any) -> NodeLayout:
    """The node layout of ``comm``'s world on its own sub-groups (collective the first time: every rank must call
    it)."""
    world = comm.world_group
    layout = _LAYOUTS.get(world)
    if layout is not None:
        return layout
    names = comm.side_channel.scope("hierarchical").exchange(
        "nodes", node_name(), world.rank, world.world_size, what="say which node it is on"
    )
    nodes = group_nodes(names)
    node, local, intra, cross = make_groups(
        nodes, world.rank, lambda i, m: comm.create_group(list(m)), lambda m: comm.create_group(list(m))
    )
    layout = NodeLayout(
        nodes=nodes, node=node, local_rank=local, intra=intra, cross=cross, intra_comm=comm, cross_comm=comm
    )
    _LAYOUTS[world] = layout
    return layout


def _world_only(comm: Any, g: CommGroup, op: str) -> None:
    if g.world_size != comm.world_group.world_size:
        raise BackendNotSupportedError(
            f"algorithm 'hierarchical' runs {op} on the world group (its node groups are "
            "created by every rank of the world); use ring or native on sub-groups, or "
            "the 'hier' backend, whose sub-groups are hierarchical too"
        )


# ---------------------------------------------------------------------------------------------------------------
# the algorithm on one backend (its world group), as --algo hierarchical runs it
# ---------------------------------------------------------------------------------------------------------------
def all_reduce(comm: Any, tensor: torch.Tensor, op: Any = "sum", group: CommGroup | None = None) -> torch.Tensor:
    g = world_of(comm, group)
    rop = reduce_op_for(op, tensor)
    _world_only(comm, g, "all_reduce")
    if g.world_size == 1 or tensor.numel() == 0:
        return tensor
    flat = flat_view(tensor)
    layout_all_reduce(node_layout(comm), flat, rop)
    return copy_back(tensor, flat)


def all_gather(comm: Any, output: torch.Tensor, tensor: torch.Tensor, group: CommGroup | None = None) -> torch.Tensor:
    g = world_of(comm, group)
    _world_only(comm, g, "all_gather")
    layout = node_layout(comm)
    if not layout.uniform:
        return ring.all_gather(comm, output, tensor, g)
    out = flat_view(output)
    layout_all_gather(layout, out, tensor.reshape(-1))
    return copy_back(output, out)


def reduce_scatter(
    comm: Any, output: torch.Tensor, input: torch.Tensor, op: Any = "sum", group: CommGroup | None = None
) -> torch.Tensor:
    g = world_of(comm, group)
    rop = reduce_op_for(op, output)
    _world_only(comm, g, "reduce_scatter")
    layout = node_layout(comm)
    if not layout.uniform:
        return ring.reduce_scatter(comm, output, input, op, g)
    out = flat_view(output)
    layout_reduce_scatter(layout, out, input.reshape(-1), rop)
    return copy_back(output, out)


def broadcast(comm: Any, tensor: torch.Tensor, root: int = 0, group: CommGroup | None = None) -> torch.Tensor:
    g = world_of(comm, group)
    _world_only(comm, g, "broadcast")
    tree.check_root(root, g, "broadcast src_rank")
    layout = node_layout(comm)
    if not layout.uniform:
        return tree.broadcast(comm, tensor, root, g)
    flat = flat_view(tensor)
    layout_broadcast(layout, flat, root)
    return copy_back(tensor, flat)


# ---------------------------------------------------------------------------------------------------------------
# the stages, on a layout (flat contiguous 1-D tensors; the caller checks shapes and copies back)
# ---------------------------------------------------------------------------------------------------------------
def layout_all_reduce(layout: NodeLayout, flat: torch.Tensor, rop: ReduceOp) -> None:
    """All-reduce ``flat`` (contiguous, 1-D) in place over the layout's group; AVG divides by the group size."""
    if flat.numel() == 0:
        return
    stage_op = ReduceOp.SUM if rop is ReduceOp.AVG else rop  # AVG: sums through the stages, one division at the end
    if layout.uniform:
        _two_level(layout, flat, stage_op)
    else:
        _leaders(layout, flat, stage_op)
    finish_reduce_(flat, rop, sum(len(n) for n in layout.nodes))


def _cross_all_reduce(layout: NodeLayout, data: torch.Tensor, rop: ReduceOp, *, async_op: bool = False) -> Any:
    """Stage 2 on ``data``; with ``async_op`` (and a backend that has async collectives) a Work to wait on."""
    comm = layout.cross_comm
    if layout.cross.world_size == 1 or data.numel() == 0:
        return None
    if comm.capabilities.declares("all_reduce", data.dtype, rop):
        return comm.all_reduce(data, op=rop, group=layout.cross, async_op=async_op and comm.capabilities.async_ops)
    ring.all_reduce(comm, data, rop, layout.cross)
    return None


def _segments(flat: torch.Tensor) -> list[torch.Tensor]:
    """Large buffers go through the stages in segments, so that one segment crosses the nodes while the next is
    reduced inside the node (as NCCL pipelines its hierarchical algorithms)."""
    count = max(1, min(MAX_SEGMENTS, flat.numel() * flat.element_size() // SEGMENT_BYTES))
    return list(torch.tensor_split(flat, count))


def _two_level(layout: NodeLayout, flat: torch.Tensor, rop: ReduceOp) -> None:
    comm, intra, k = layout.intra_comm, layout.intra, layout.local_rank
    size = intra.world_size
    if size == 1:
        _cross_all_reduce(layout, flat, rop)
        return
    pending = []
    for seg in _segments(flat):
        chunks = list(torch.tensor_split(seg, size))
        even = seg.numel() % size == 0
        if even and comm.capabilities.declares("reduce_scatter", seg.dtype, rop):
            mine = torch.empty_like(chunks[k])
            comm.reduce_scatter(mine, seg, op=rop, group=intra)
            chunks[k].copy_(mine)
        else:
            ring.reduce_scatter_phase(comm, intra, chunks, rop)
        pending.append((seg, chunks, even, _cross_all_reduce(layout, chunks[k], rop, async_op=True)))
    for seg, chunks, even, work in pending:
        if work is not None:
            work.wait(layout.cross.timeout_s)
        if even and comm.capabilities.declares("all_gather_into_tensor", seg.dtype, None):
            comm.all_gather_into_tensor(seg, chunks[k].clone(), group=intra)
        else:
            ring.all_gather_phase(comm, intra, chunks)


def _leaders(layout: NodeLayout, flat: torch.Tensor, rop: ReduceOp) -> None:
    comm, intra = layout.intra_comm, layout.intra
    if intra.world_size > 1:
        if comm.capabilities.declares("reduce", flat.dtype, rop):
            comm.reduce(flat, dst_rank=0, op=rop, group=intra)
        else:
            tree.reduce(comm, flat, 0, rop, intra)
    if layout.local_rank == 0:
        _cross_all_reduce(layout, flat, rop)
    if intra.world_size > 1:
        if comm.capabilities.declares("broadcast", flat.dtype, None):
            comm.broadcast(flat, src_rank=0, group=intra)
        else:
            tree.broadcast(comm, flat, 0, intra)


def _gather_into(comm: Any, group: CommGroup, out: torch.Tensor, mine: torch.Tensor) -> None:
    if group.world_size == 1:
        out.copy_(mine)
    elif comm.capabilities.declares("all_gather_into_tensor", mine.dtype, None):
        comm.all_gather_into_tensor(out, mine, group=group)
    else:
        ring.all_gather(comm, out, mine, group)


def _scatter_from(comm: Any, group: CommGroup, out: torch.Tensor, data: torch.Tensor, rop: ReduceOp) -> None:
    if group.world_size == 1:
        out.copy_(data)
    elif comm.capabilities.declares("reduce_scatter", data.dtype, rop):
        comm.reduce_scatter(out, data, op=rop, group=group)
    else:
        ring.reduce_scatter(comm, out, data, rop, group)


def layout_all_gather(layout: NodeLayout, out: torch.Tensor, mine: torch.Tensor) -> None:
    """Equal node sizes. ``out`` (contiguous, p x n) gets every rank's ``mine`` (n) in group-rank order: across
    nodes first (each block crosses each node boundary once), then inside the node, then one reorder."""
    n, N, L = mine.numel(), len(layout.nodes), layout.ranks_per_node
    if n == 0:
        return
    across = torch.empty(N * n, dtype=mine.dtype, device=mine.device)
    _gather_into(layout.cross_comm, layout.cross, across, mine.contiguous())
    staged = torch.empty(L * N * n, dtype=mine.dtype, device=mine.device)
    _gather_into(layout.intra_comm, layout.intra, staged, across)
    out.view(L * N, n).index_copy_(0, layout.order().to(out.device), staged.view(L * N, n))


def layout_reduce_scatter(layout: NodeLayout, out: torch.Tensor, data: torch.Tensor, rop: ReduceOp) -> None:
    """Equal node sizes. ``out`` (n) gets the reduction of every rank's chunk for this rank from ``data``
    (p x n, group-rank order): reorder, reduce-scatter inside the node, reduce-scatter across nodes."""
    n, N, L = out.numel(), len(layout.nodes), layout.ranks_per_node
    if n == 0:
        return
    stage_op = ReduceOp.SUM if rop is ReduceOp.AVG else rop
    staged = data.reshape(L * N, n).index_select(0, layout.order().to(data.device)).reshape(-1)
    across = torch.empty(N * n, dtype=out.dtype, device=out.device)
    _scatter_from(layout.intra_comm, layout.intra, across, staged, stage_op)
    _scatter_from(layout.cross_comm, layout.cross, out, across, stage_op)
    finish_reduce_(out, rop, N * L)


def layout_broadcast(layout: NodeLayout, flat: torch.Tensor, root: int) -> None:
    """Equal node sizes. ``root`` (a group rank) sends to the ranks with its local rank on the other nodes, each of
    which sends on inside its node."""
    if flat.numel() == 0:
        return
    root_node = next(i for i, members in enumerate(layout.nodes) if root in members)
    k = layout.nodes[root_node].index(root)
    if layout.local_rank == k and layout.cross.world_size > 1:
        src = layout.cross_members(k).index(root)
        if layout.cross_comm.capabilities.declares("broadcast", flat.dtype, None):
            layout.cross_comm.broadcast(flat, src_rank=src, group=layout.cross)
        else:
            tree.broadcast(layout.cross_comm, flat, src, layout.cross)
    if layout.intra.world_size > 1:
        if layout.intra_comm.capabilities.declares("broadcast", flat.dtype, None):
            layout.intra_comm.broadcast(flat, src_rank=k, group=layout.intra)
        else:
            tree.broadcast(layout.intra_comm, flat, k, layout.intra)


ALGORITHM = Algorithm(
    name="hierarchical",
    description="two-level collectives for ranks on several nodes: all_reduce = reduce-scatter in the node, "
    "all_reduce across nodes per local rank, all-gather in the node (leaders when node sizes differ); "
    "all_gather, reduce_scatter and broadcast cross each node boundary once; world group only",
    impls={
        "all_reduce": all_reduce,
        "all_gather": all_gather,
        "reduce_scatter": reduce_scatter,
        "broadcast": broadcast,
    },
    cost={
        "all_reduce": "intra reduce-scatter + inter all_reduce of n/L per local rank + intra all-gather "
        "(L ranks per node); the nodes' links carry n bytes instead of a flat ring's 2((p-1)/p) n",
        "all_gather": "inter all-gather of n per rank among N nodes + intra all-gather of N n",
        "reduce_scatter": "intra reduce-scatter of p n + inter reduce-scatter of N n",
        "broadcast": "inter broadcast among N nodes + intra broadcast among L ranks",
    },
    needs=frozenset({"send", "recv"}),
)
