"""The shared conformance suite on the composite ``hier`` backend, nodes simulated on this host.

Rank r sits on node r // 2 (SAGELLM_COMM_HIER_RANKS_PER_NODE=2, torchrun's placement), so world size 2 is one node
(every call on shm), 3 is two uneven nodes (2 + 1: the leader variant, flat fallbacks) and 4 is 2 x 2; the
two-level path is pinned (SAGELLM_COMM_HIER_ALGO=hierarchical) so every size runs it, whatever the cost model would
pick on loopback. Sub-groups (the suite's TP/PP groups) span the simulated nodes.
"""

from typing import Any

import pytest

from sagellm_comm.testing import BackendConformance
from sagellm_comm.testing.runner import PoolCache

ENV = {"SAGELLM_COMM_HIER_RANKS_PER_NODE": "2", "SAGELLM_COMM_HIER_ALGO": "hierarchical"}


class TestHierConformance(BackendConformance):
    backend = "hier"
    world_sizes = (2, 3, 4)

    @pytest.fixture(scope="class")
    @classmethod
    def comm_rank_pools(cls, tmp_path_factory: pytest.TempPathFactory) -> Any:
        # its own pools: the ranks need the simulated layout in their environment (and a link cache of their own)
        cache = PoolCache(env={**ENV, "SAGELLM_COMM_TOPOLOGY_CACHE": str(tmp_path_factory.mktemp("links"))})
        yield cache
        cache.close()
