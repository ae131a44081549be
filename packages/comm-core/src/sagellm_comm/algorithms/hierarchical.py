"""``hierarchical``: all_reduce that sends each byte across nodes once, for ranks spread over several hosts.

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

__all__ = ["ALGORITHM", "NODE_ID_ENV", "NodeLayout", "node_layout"]

NODE_ID_ENV = "SAGELLM_COMM_NODE_ID"
SEGMENT_BYTES = 2 << 20  # pipeline segments of about this size ...
MAX_SEGMENTS = 8  # ... at most this many


@dataclass(frozen=True)
class NodeLayout:
    """Where this rank sits: its node's group, the group of ranks with its local rank on every node, and the
    node sizes (``nodes[i]`` = the world ranks of node i, in rank order)."""

    nodes: tuple[tuple[int, ...], ...]
    node: int
    local_rank: int
    intra: CommGroup
    cross: CommGroup

    @property
    def uniform(self) -> bool:
        return len({len(n) for n in self.nodes}) == 1


# keyed by the world group object: a backend destroyed and initialized again gets a new world and new node groups
_LAYOUTS: weakref.WeakKeyDictionary[CommGroup, NodeLayout] = weakref.WeakKeyDictionary()


def _node_name() -> str:
    return os.environ.get(NODE_ID_ENV) or socket.gethostname()


def node_layout(comm: Any) -> NodeLayout:
    """The node layout of ``comm``'s world (collective the first time: every rank must call it)."""
    world = comm.world_group
    layout = _LAYOUTS.get(world)
    if layout is not None:
        return layout
    names = comm.side_channel.scope("hierarchical").exchange("nodes", _node_name(), world.rank, world.world_size,
                                                              what="say which node it is on")
    order: dict[bytes, list[int]] = {}
    for rank, name in enumerate(names):
        order.setdefault(name, []).append(rank)
    nodes = tuple(tuple(r) for r in order.values())
    node = next(i for i, members in enumerate(nodes) if world.rank in members)
    local = nodes[node].index(world.rank)
    intra = cross = None
    for i, members in enumerate(nodes):  # every rank creates every group, in the same order
        g = comm.create_group(list(members))
        if i == node:
            intra = g
    for k in range(max(len(m) for m in nodes)):
        members = [m[k] for m in nodes if k < len(m)]
        g = comm.create_group(members)
        if k == local:
            cross = g
    layout = NodeLayout(nodes=nodes, node=node, local_rank=local, intra=intra, cross=cross)
    _LAYOUTS[world] = layout
    return layout


def _native(comm: Any, op: str, rop: ReduceOp | None, dtype: torch.dtype) -> bool:
    caps = comm.capabilities
    return op in caps.ops and dtype in caps.dtypes and (rop is None or caps.supports_reduce(rop, dtype))


def all_reduce(comm: Any, tensor: torch.Tensor, op: Any = "sum", group: CommGroup | None = None) -> torch.Tensor:
    g = world_of(comm, group)
    rop = reduce_op_for(op, tensor)
    if g.world_size != comm.world_group.world_size:
        raise BackendNotSupportedError("algorithm 'hierarchical' runs on the world group (its node groups are created "
                                       "by every rank of the world); use ring or native on sub-groups")
    if g.world_size == 1 or tensor.numel() == 0:
        return tensor
    layout = node_layout(comm)
    stage_op = ReduceOp.SUM if rop is ReduceOp.AVG else rop  # AVG: sums through the stages, one division at the end
    flat = flat_view(tensor)
    if layout.uniform:
        _two_level(comm, layout, flat, stage_op)
    else:
        _leaders(comm, layout, flat, stage_op)
    finish_reduce_(flat, rop, g.world_size)
    return copy_back(tensor, flat)


def _cross_all_reduce(comm: Any, layout: NodeLayout, data: torch.Tensor, rop: ReduceOp, *,
                      async_op: bool = False) -> Any:
    """Stage 2 on ``data``; with ``async_op`` (and a backend that has async collectives) a Work to wait on."""
    if layout.cross.world_size == 1 or data.numel() == 0:
        return None
    if _native(comm, "all_reduce", rop, data.dtype):
        return comm.all_reduce(data, op=rop, group=layout.cross, async_op=async_op and comm.capabilities.async_ops)
    ring.all_reduce(comm, data, rop, layout.cross)
    return None


def _segments(flat: torch.Tensor) -> list[torch.Tensor]:
    """Large buffers go through the stages in segments, so that one segment crosses the nodes while the next is
    reduced inside the node (as NCCL pipelines its hierarchical algorithms)."""
    count = max(1, min(MAX_SEGMENTS, flat.numel() * flat.element_size() // SEGMENT_BYTES))
    return list(torch.tensor_split(flat, count))


def _two_level(comm: Any, layout: NodeLayout, flat: torch.Tensor, rop: ReduceOp) -> None:
    intra, k = layout.intra, layout.local_rank
    size = intra.world_size
    if size == 1:
        _cross_all_reduce(comm, layout, flat, rop)
        return
    pending = []
    for seg in _segments(flat):
        chunks = list(torch.tensor_split(seg, size))
        even = seg.numel() % size == 0
        if even and _native(comm, "reduce_scatter", rop, seg.dtype):
            mine = torch.empty_like(chunks[k])
            comm.reduce_scatter(mine, seg, op=rop, group=intra)
            chunks[k].copy_(mine)
        else:
            ring.reduce_scatter_phase(comm, intra, chunks, rop)
        pending.append((seg, chunks, even, _cross_all_reduce(comm, layout, chunks[k], rop, async_op=True)))
    for seg, chunks, even, work in pending:
        if work is not None:
            work.wait(layout.cross.timeout_s)
        if even and _native(comm, "all_gather_into_tensor", None, seg.dtype):
            comm.all_gather_into_tensor(seg, chunks[k].clone(), group=intra)
        else:
            ring.all_gather_phase(comm, intra, chunks)


def _leaders(comm: Any, layout: NodeLayout, flat: torch.Tensor, rop: ReduceOp) -> None:
    intra = layout.intra
    if intra.world_size > 1:
        if _native(comm, "reduce", rop, flat.dtype):
            comm.reduce(flat, dst_rank=0, op=rop, group=intra)
        else:
            tree.reduce(comm, flat, 0, rop, intra)
    if layout.local_rank == 0:
        _cross_all_reduce(comm, layout, flat, rop)
    if intra.world_size > 1:
        if _native(comm, "broadcast", None, flat.dtype):
            comm.broadcast(flat, src_rank=0, group=intra)
        else:
            tree.broadcast(comm, flat, 0, intra)


ALGORITHM = Algorithm(
    name="hierarchical",
    description="two-level all_reduce for ranks on several nodes: reduce-scatter in the node, all_reduce across "
                "nodes per local rank, all-gather in the node (leaders when node sizes differ); world group only",
    impls={"all_reduce": all_reduce},
    cost={"all_reduce": "intra reduce-scatter + inter all_reduce of n/L per local rank + intra all-gather "
                        "(L ranks per node); the nodes' links carry n bytes instead of a flat ring's 2((p-1)/p) n"},
    needs=frozenset({"send", "recv"}),
)
