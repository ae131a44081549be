"""What the ranks of the topology tests run (module-level functions, so the launchers can send them by name).

The multi-rank tests need a backend that crosses hosts (TCP). The Gloo plugin is used when it is installed; the
tox env ``topology`` installs only the core and this plugin, so there the tests register a backend of their own on
the core's torch.distributed engine with torch's Gloo (the same process group the Gloo plugin wraps). The
topology code under test only ever sees a ``CommBackend``.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from sagellm_comm.capabilities import ALL_OPS, FLOAT_DTYPES, INT_DTYPES, Capabilities
from sagellm_comm.engines.torch_distributed import TorchDistributedBackend
from sagellm_comm.registry import get_comm_backend, is_comm_backend_available, register_comm_backend

TEST_BACKEND = "tcp-test"


class TcpTestBackend(TorchDistributedBackend):
    """torch.distributed Gloo through the core engine: used only when no Gloo plugin is installed."""

    name = TEST_BACKEND
    torch_backend = "gloo"
    capabilities = Capabilities(
        ops=ALL_OPS,
        dtypes=FLOAT_DTYPES | INT_DTYPES,
        devices=frozenset({"cpu"}),
        reduce_support=Capabilities.reduce_table(FLOAT_DTYPES, INT_DTYPES),
    )


def network_backend_name() -> str:
    """``gloo`` if the plugin is installed, else the test backend (registered in this process)."""
    if is_comm_backend_available("gloo"):
        return "gloo"
    register_comm_backend(TEST_BACKEND, TcpTestBackend, description="tests only: Gloo through the core engine")
    return TEST_BACKEND


def _init(timeout: float = 60.0) -> Any:
    comm = get_comm_backend(network_backend_name())
    comm.init_process_group(timeout=timeout)
    return comm


def gather_and_profile(cache_dir: str, budget_s: float) -> dict[str, Any]:
    """Discovery through the core (the plugin's gather hook), then profile twice: measured, then from the cache."""
    from sagellm_comm import Topology
    from sagellm_comm_topology.cache import ProfileCache
    from sagellm_comm_topology.facts import cluster_of
    from sagellm_comm_topology.profiler import ProfileConfig, profile_or_reuse

    comm = _init()
    try:
        topo = Topology.discover(backend=comm)
        cluster = cluster_of(topo)
        cache = ProfileCache(cache_dir)
        first, reused_first = profile_or_reuse(
            comm, cluster, cache=cache, refresh=True, config=ProfileConfig(budget_s=budget_s)
        )
        again = cluster_of(topo)
        second, reused_second = profile_or_reuse(comm, again, cache=cache)
        desc = cluster.descriptor(comm.name)
        return {
            "backend": comm.name,
            "num_nodes": topo.num_nodes,
            "cluster": cluster.to_dict(),
            "profile": first,
            "reused": [reused_first, reused_second],
            "second_created": second["created"],
            "descriptor": desc.model_dump(mode="json"),
            **hostname_and_env(),
        }
    finally:
        comm.destroy()


def hostname_and_env() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "rank": os.environ["RANK"],
        "local_rank": os.environ["LOCAL_RANK"],
        "master": os.environ["MASTER_ADDR"],
        "ifname": os.environ.get("GLOO_SOCKET_IFNAME"),
        "interfaces": sorted(os.listdir("/sys/class/net")),
    }


def fail_on(rank: int) -> str:
    if int(os.environ["RANK"]) == rank:
        raise ValueError(f"deliberate failure on rank {rank}")
    return "ok"
