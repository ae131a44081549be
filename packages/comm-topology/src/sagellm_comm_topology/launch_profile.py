"""``sagellm-comm topology --profile``: start local ranks, gather the map, measure the links, cache the result."""

from __future__ import annotations

from typing import Any

from sagellm_comm.errors import InvalidArgumentError
from sagellm_comm.launch import RankPool
from sagellm_comm.registry import get_comm_backend, select_backend_name
from sagellm_comm_topology.cluster import ClusterTopology

__all__ = ["profile_local_ranks", "profile_rank"]

INIT_TIMEOUT_S = 60.0


def profile_rank(backend: str, budget_s: float, refresh: bool = True) -> dict[str, Any]:
    """What each rank runs: init the backend, gather the map, profile (fresh unless ``refresh`` is False)."""
    from sagellm_comm_topology.gather import gather_cluster
    from sagellm_comm_topology.profiler import ProfileConfig, profile_or_reuse

    comm = get_comm_backend(backend)
    comm.init_process_group(timeout=INIT_TIMEOUT_S)
    try:
        cluster = gather_cluster(comm)
        profile_or_reuse(comm, cluster, refresh=refresh, config=ProfileConfig(budget_s=budget_s))
        return cluster.to_dict()
    finally:
        comm.destroy()


def profile_local_ranks(backend: str | None, world_size: int, budget_s: float) -> ClusterTopology:
    """Profile this host with ``world_size`` local ranks through ``backend`` (None: auto)."""
    if world_size < 2:
        raise InvalidArgumentError(f"profiling needs at least 2 ranks, got {world_size}")
    name = backend or select_backend_name()
    get_comm_backend(name)  # unknown or unavailable: a clear error here, before any rank starts
    with RankPool(world_size) as pool:
        results = pool.run(profile_rank, name, budget_s, timeout=INIT_TIMEOUT_S + budget_s + 60.0)
    return ClusterTopology.from_dict(results[0])
