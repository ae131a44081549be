"""The hierarchical algorithm across simulated hosts (netns lab: each namespace its own hostname): 2 nodes x 2 ranks
(the two-level path) and 3 nodes with 2, 2 and 1 ranks (the leader path; ring/tree for the other ops), all_reduce with
every reduce op, all_gather, reduce_scatter and broadcast from every root against the references, and identical bits
on every rank. Skipped with the reason where namespaces cannot be created."""

from __future__ import annotations

import algo_tasks
import pytest

from sagellm_comm_lab import netns

pytestmark = pytest.mark.multirank

REASON = netns.unavailable_reason()


@pytest.mark.skipif(bool(REASON), reason=f"network namespaces unavailable: {REASON}")
@pytest.mark.parametrize(
    "placement, nodes, uniform",
    [
        ([0, 0, 1, 1], [[0, 1], [2, 3]], True),
        ([0, 1, 2, 0, 1], [[0, 3], [1, 4], [2]], False),
    ],
    ids=["2x2", "2+2+1"],
)
def test_hierarchical_all_reduce_across_hosts(placement: list[int], nodes: list[list[int]], uniform: bool) -> None:
    with netns.NetnsLab(max(placement) + 1) as lab:
        results = lab.run_ranks(algo_tasks.on_simulated_nodes, placement, 1000, timeout=240)
    for rank, r in enumerate(results):
        assert r["nodes"] == nodes and r["uniform"] is uniform, (rank, r)
        assert r["checks"] >= len(algo_tasks.CASES) + 3 + len(placement)
    assert len({r["digest"] for r in results}) == 1, "ranks hold different bits"
