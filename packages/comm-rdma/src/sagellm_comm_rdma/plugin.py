"""Entry point of the rdma plugin (group ``sagellm_comm.plugins``, name ``rdma``); registers by path, imports
nothing heavy."""

from __future__ import annotations

from sagellm_comm.plugins import hookimpl
from sagellm_comm.registry import BackendRegistry, BackendSpec

# the plugin API this entry module is written for; the core skips it when it speaks another (docs/plugins.md)
SAGELLM_COMM_PLUGIN_API = "2.0"


@hookimpl
def sagellm_comm_register_backends(registry: BackendRegistry) -> None:
    # priority 0: "auto" never picks a backend without collectives over gloo/shm/nccl
    registry.register(
        BackendSpec(
            name="rdma",
            factory="sagellm_comm_rdma.backend:RdmaBackend",
            devices=frozenset({"cpu"}),
            priority=0,
            available="sagellm_comm_rdma.probes:available",
            install_hint="pip install 'isagellm-comm[rdma]' (isagellm-comm-rdma)",
            description="NIXL/UCX: point-to-point and KV-block transfers (RDMA verbs, shared memory or TCP per peer)",
        )
    )
