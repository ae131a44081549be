"""sagellm-comm topology plugin: real topology discovery, the multi-node view, link profiling and a picture of it.

- ``discover_host(root="/")``: this host from sysfs (CPU, NUMA, PCIe, NICs, RDMA, CXL), NVML and the AMD KFD
  topology, each source failing soft with its reason; ``root`` may be a recorded tree (tests, replays).
- ``gather_cluster(backend)``: collective; every rank gets the whole job's map (nodes, ranks, links).
- ``ClusterTopology``: the native model; ``descriptor()`` gives the protocol's ``CommTopologyDescriptor``;
  ``save``/``load`` pin or replay it as JSON.
- ``profile_links`` / ``profile_or_reuse``: latency and bandwidth between rank pairs through any backend, cached per
  topology fingerprint.
- ``render(cluster, "topo.png")``: the picture; ``build_tree(cluster)``: the tree ``sagellm-comm topology`` prints.

Installed, it plugs into the core through hooks: ``Topology.discover()`` returns the full view and
``sagellm-comm topology`` gains the tree, ``--render`` and ``--profile``. Names are imported on first use, so
loading the plugin (every process that uses sagellm-comm does) costs no matplotlib import.
"""

from __future__ import annotations

import importlib
from typing import Any

from sagellm_comm_topology._version import __version__

_WHERE = {
    "ProfileCache": "cache",
    "ClusterTopology": "cluster",
    "load_topology": "cluster",
    "gather_cluster": "gather",
    "discover_host": "local",
    "HostTopology": "model",
    "Link": "model",
    "RankInfo": "model",
    "ProfileConfig": "profiler",
    "profile_links": "profiler",
    "profile_or_reuse": "profiler",
    "render": "draw",
    "build_tree": "tree",
}

__all__ = ["__version__", *sorted(_WHERE)]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sagellm_comm_topology' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sagellm_comm_topology.{module}"), name)
