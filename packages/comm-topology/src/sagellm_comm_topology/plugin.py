"""Entry point of the topology plugin (group ``sagellm_comm.plugins``, name ``topology``).

Implements the core's topology hooks: local facts for ``Topology.discover()``, the multi-rank gather, the protocol
descriptor, the CLI's tree, picture and profiler; and the hier composite's link parameters from the profile cache.
"""

from __future__ import annotations

from typing import Any

from sagellm_comm.plugins import hookimpl

# the plugin API this entry module is written for; the core skips it when it speaks another (docs/plugins.md)
SAGELLM_COMM_PLUGIN_API = "2.0"

__all__ = [
    "sagellm_comm_link_parameters",
    "sagellm_comm_topology_descriptor",
    "sagellm_comm_topology_facts",
    "sagellm_comm_topology_gather",
    "sagellm_comm_topology_profile",
    "sagellm_comm_topology_render",
    "sagellm_comm_topology_tree",
]


@hookimpl
def sagellm_comm_topology_facts(topology: Any) -> dict[str, Any]:
    from sagellm_comm_topology.facts import local_cluster

    cluster = local_cluster(topology.hostname, topology.node_id)
    topology.num_nodes = cluster.num_nodes
    return cluster.to_dict()


@hookimpl
def sagellm_comm_topology_gather(topology: Any, backend: Any, group: Any) -> dict[str, Any]:
    from sagellm_comm_topology.cache import ProfileCache
    from sagellm_comm_topology.facts import cluster_of
    from sagellm_comm_topology.gather import gather_cluster

    local = cluster_of(topology)
    host = local.nodes[0] if local.num_nodes == 1 else None
    cluster = gather_cluster(backend, group, host=host)
    cached = ProfileCache().load(cluster.fingerprint(), backend.name)
    if cached is not None:
        cluster.apply_profile(cached)
    topology.num_nodes = cluster.num_nodes
    return cluster.to_dict()


@hookimpl
def sagellm_comm_topology_descriptor(topology: Any, backend: str | None) -> Any:
    from sagellm_comm_topology.facts import cluster_of

    return cluster_of(topology).descriptor(backend)


@hookimpl
def sagellm_comm_topology_tree(topology: Any) -> Any:
    from sagellm_comm_topology.facts import cluster_of
    from sagellm_comm_topology.tree import build_tree

    return build_tree(cluster_of(topology), torch_reason=getattr(topology, "accelerator_reason", ""))


@hookimpl
def sagellm_comm_topology_render(topology: Any, path: str) -> str:
    from sagellm_comm_topology.draw import render
    from sagellm_comm_topology.facts import cluster_of

    return str(render(cluster_of(topology), path))


@hookimpl
def sagellm_comm_topology_profile(
    topology: Any, backend: str | None, world_size: int, budget_s: float
) -> dict[str, Any]:
    from sagellm_comm_topology.launch_profile import profile_local_ranks

    cluster = profile_local_ranks(backend, world_size, budget_s)
    for key, value in list(topology.facts.items()):
        if isinstance(value, dict) and "schema" in value:
            topology.facts[key] = cluster.to_dict()
    topology.num_nodes = cluster.num_nodes
    return cluster.profile or {}


@hookimpl
def sagellm_comm_link_parameters(backend: Any, transports: tuple[str, str], measure: Any) -> dict[str, Any]:
    from sagellm_comm_topology.link_cache import cached_or_measured

    return cached_or_measured(backend, tuple(transports), measure)
