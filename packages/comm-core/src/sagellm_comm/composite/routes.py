"""A ``hier`` group's handle: where its members sit, and its groups on each transport.

Every rank of the world creates every group, in the same order (as ``torch.distributed.new_group``), so each
transport sees the same sequence of ``create_group`` calls on all of its ranks: the inter transport (whose world is
the composite's) gets the group itself and, when the group spans nodes, one group per local rank across its nodes;
the intra transport (whose world is one node) gets the group's members on that node, from every rank of the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sagellm_comm.algorithms.hierarchical import NodeLayout, make_groups
from sagellm_comm.group import CommGroup

__all__ = ["Route", "build_route"]


@dataclass
class Route:
    """``inter``: the group on the inter transport (all members); ``intra``: this node's members on the intra
    transport; ``layout``: the two-level view (None when all members are on one node); ``local``: group rank ->
    rank in ``intra`` for the members on this node."""

    inter: CommGroup
    intra: CommGroup
    layout: NodeLayout | None
    local: dict[int, int]
    nodes: tuple[tuple[int, ...], ...]
    # decisions already made on this group: (op, bytes, dtype, reduce op, pin) -> Decision (the same inputs give the
    # same decision, so a small message does not pay for the cost model and its reason on every call)
    decisions: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    @property
    def one_node(self) -> bool:
        return self.layout is None


def build_route(
    members: tuple[int, ...],
    me_world: int,
    world_node: dict[int, int],
    world_local: dict[int, int],
    intra_comm: Any,
    inter_comm: Any,
    inter_group: CommGroup,
    intra_world: CommGroup | None,
) -> Route | None:
    """Create the transports' groups for the composite group ``members`` (world ranks, ascending); collective over
    the world. ``world_node``/``world_local``: world rank -> node index / rank inside its node. Returns None on
    ranks outside the group (after taking part in the creations)."""
    my_node = world_node[me_world]
    by_node: dict[int, list[int]] = {}
    for gr, wr in enumerate(members):
        by_node.setdefault(world_node[wr], []).append(gr)
    nodes = tuple(tuple(v) for _, v in sorted(by_node.items(), key=lambda kv: kv[1][0]))
    mine = by_node.get(my_node, [])
    intra: CommGroup | None = None
    if mine:  # every rank of this node takes part, members of the group or not
        local_ranks = [world_local[members[gr]] for gr in mine]
        whole = intra_world is not None and len(local_ranks) == intra_world.world_size
        intra = intra_world if whole else intra_comm.create_group(local_ranks)
    layout = None
    if len(nodes) > 1:

        def make_cross(group_ranks: list[int]) -> CommGroup:
            return inter_comm.create_group([members[gr] for gr in group_ranks])

        me = members.index(me_world) if me_world in members else None
        if me is None:  # not a member: create the cross groups like everyone, keep nothing
            for k in range(max(len(n) for n in nodes)):
                make_cross(sorted(n[k] for n in nodes if k < len(n)))
        else:
            assert intra is not None  # a member's node has members: mine is not empty
            node, local, _, cross = make_groups(nodes, me, lambda i, m: None, make_cross)
            layout = NodeLayout(
                nodes=nodes,
                node=node,
                local_rank=local,
                intra=intra,
                cross=cross,
                intra_comm=intra_comm,
                cross_comm=inter_comm,
            )
    if me_world not in members:
        return None
    assert intra is not None
    local_of = {gr: i for i, gr in enumerate(mine)}
    return Route(inter=inter_group, intra=intra, layout=layout, local=local_of, nodes=nodes)
