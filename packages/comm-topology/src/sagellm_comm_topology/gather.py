"""The multi-rank view: each rank contributes its host's facts through the group; every rank gets the whole map."""

from __future__ import annotations

import os
from typing import Any

from sagellm_comm.backend import CommBackend
from sagellm_comm_topology.cluster import ClusterTopology
from sagellm_comm_topology.exchange import all_gather_json
from sagellm_comm_topology.local import discover_host
from sagellm_comm_topology.model import HostTopology, RankInfo, from_dict

__all__ = ["gather_cluster", "rank_descriptor"]


def _device(backend: CommBackend) -> str:
    dev = backend.device
    return f"{dev.type}:{dev.index}" if dev.type != "cpu" and dev.index is not None else dev.type


def rank_descriptor(backend: CommBackend, host: HostTopology, group: Any = None) -> dict[str, Any]:
    """What one rank tells the others: who it is, its device, and its host's facts."""
    return {
        "rank": backend.get_rank(group),
        "pid": os.getpid(),
        "device": _device(backend),
        "backend": backend.name,
        "host": host.to_dict(),
    }


def gather_cluster(backend: CommBackend, group: Any = None, host: HostTopology | None = None) -> ClusterTopology:
    """Collective over ``group`` (default: the world): every rank calls it and gets the same ``ClusterTopology``.

    Nodes are told apart by node id (hostname + machine id, or ``SAGELLM_COMM_NODE_ID``); each node's facts come
    from its lowest rank.
    """
    local = host if host is not None else discover_host()
    descs = all_gather_json(backend, rank_descriptor(backend, local, group), group)
    hosts: dict[str, HostTopology] = {}
    for d in sorted(descs, key=lambda d: d["rank"]):
        node_id = d["host"]["node_id"]
        if node_id not in hosts:
            hosts[node_id] = from_dict(HostTopology, d["host"])
    topo = ClusterTopology.from_hosts(list(hosts.values()), backend=backend.name)
    name_of = {h.node_id: h.name for h in topo.nodes}
    ranks = []
    counters: dict[str, int] = {}
    for d in sorted(descs, key=lambda d: d["rank"]):
        node = name_of[d["host"]["node_id"]]
        ranks.append(
            RankInfo(rank=d["rank"], node=node, local_rank=counters.get(node, 0), pid=d["pid"], device=d["device"])
        )
        counters[node] = counters.get(node, 0) + 1
    topo.ranks = ranks
    return topo
