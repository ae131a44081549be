"""The bridge between the core's ``Topology`` and this package's model: what the plugin's hooks call.

The plugin stores a ``ClusterTopology`` dict in ``topology.facts`` (a single-node one for the local view, the whole
job after a gather, or a pinned one from ``SAGELLM_COMM_TOPOLOGY_FILE``); ``cluster_of`` reads it back.
"""

from __future__ import annotations

import os
from typing import Any

from sagellm_comm.topology import TOPOLOGY_FILE_ENV
from sagellm_comm_topology.cache import ProfileCache
from sagellm_comm_topology.cluster import ClusterTopology
from sagellm_comm_topology.local import discover_host
from sagellm_comm_topology.model import SCHEMA

__all__ = ["PIN_ENV", "cluster_of", "local_cluster"]

PIN_ENV = TOPOLOGY_FILE_ENV


def local_cluster(hostname: str | None = None, node_id: str | None = None) -> ClusterTopology:
    """This host as a one-node cluster (or the pinned topology), with a cached profile applied if there is one."""
    pinned = os.environ.get(PIN_ENV)
    if pinned:
        cluster = ClusterTopology.load(pinned)
    else:
        cluster = ClusterTopology.single(discover_host(hostname=hostname, node_id=node_id))
    if cluster.profile is None:
        cached = ProfileCache().load(cluster.fingerprint())
        if cached is not None:
            cluster.apply_profile(cached)
    return cluster


def cluster_of(topology: Any) -> ClusterTopology:
    """The ``ClusterTopology`` a core ``Topology`` carries in its facts (discovered now if it carries none)."""
    for value in getattr(topology, "facts", {}).values():
        if isinstance(value, dict) and value.get("schema") == SCHEMA:
            return ClusterTopology.from_dict(value)
    return local_cluster(getattr(topology, "hostname", None), getattr(topology, "node_id", None))
