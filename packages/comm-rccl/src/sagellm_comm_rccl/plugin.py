"""Entry point of the rccl plugin (group ``sagellm_comm.plugins``, name ``rccl``): registers the backend by path and
reports the RCCL library and AMD GPUs (amdsmi) to topology discovery; imports nothing heavy."""

from __future__ import annotations

from typing import Any

from sagellm_comm.plugins import hookimpl
from sagellm_comm.registry import BackendRegistry, BackendSpec

# the plugin API this entry module is written for; the core skips it when it speaks another (docs/plugins.md)
SAGELLM_COMM_PLUGIN_API = "2.0"


@hookimpl
def sagellm_comm_register_backends(registry: BackendRegistry) -> None:
    registry.register(
        BackendSpec(
            # ROCm builds of torch name AMD GPUs "cuda" devices, so auto picks rccl for them (nccl is unavailable there)
            name="rccl",
            factory="sagellm_comm_rccl.backend:RcclBackend",
            devices=frozenset({"cuda"}),
            priority=20,
            available="sagellm_comm_rccl.probes:rccl_available",
            install_hint="pip install 'isagellm-comm[rccl]' (isagellm-comm-rccl)",
            description="AMD RCCL: ROCm GPUs through torch.distributed's process group plus a HIP-graph-safe direct "
            "path (ctypes librccl)",
        )
    )


@hookimpl
def sagellm_comm_topology_facts(topology: Any) -> dict[str, Any]:
    from sagellm_comm_nccl.facts import library_facts
    from sagellm_comm_rccl.amd import amd_gpus

    return {**library_facts("rccl"), **amd_gpus()}
