"""Entry point of the nccl plugin (group ``sagellm_comm.plugins``, name ``nccl``): registers the backend by path and
reports the NCCL library to topology discovery; imports nothing heavy."""

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
            name="nccl",
            factory="sagellm_comm_nccl.backend:NcclBackend",
            devices=frozenset({"cuda"}),
            priority=20,
            available="sagellm_comm_nccl.probes:nccl_available",
            install_hint="pip install 'isagellm-comm[nccl]' (isagellm-comm-nccl)",
            description="NVIDIA NCCL: CUDA tensors, torch.distributed's NCCL process group plus a CUDA-graph-safe "
            "direct path (ctypes libnccl)",
        )
    )


@hookimpl
def sagellm_comm_topology_facts(topology: Any) -> dict[str, Any]:
    from sagellm_comm_nccl.facts import library_facts

    return library_facts("nccl")
