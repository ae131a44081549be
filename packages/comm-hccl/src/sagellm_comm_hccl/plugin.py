"""Entry point of the hccl plugin (group ``sagellm_comm.plugins``, name ``hccl``).

Registers the ``hccl`` backend by import path and contributes this host's Ascend NPUs to ``Topology.discover()``.
It imports nothing heavy: not the backend module, not torch_npu (the availability probe imports torch_npu only when
it is asked, and only when torch_npu is installed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sagellm_comm.plugins import hookimpl
from sagellm_comm.registry import BackendRegistry, BackendSpec

# the plugin API this entry module is written for; the core skips it when it speaks another (docs/plugins.md)
SAGELLM_COMM_PLUGIN_API = "2.0"

if TYPE_CHECKING:
    from sagellm_comm.topology import Topology

__all__ = ["sagellm_comm_register_backends", "sagellm_comm_topology_facts"]


@hookimpl
def sagellm_comm_register_backends(registry: BackendRegistry) -> None:
    registry.register(
        BackendSpec(
            name="hccl",
            factory="sagellm_comm_hccl.backend:HcclBackend",
            devices=frozenset({"npu"}),
            priority=20,
            available="sagellm_comm_hccl.probes:hccl_available",
            install_hint="pip install 'isagellm-comm[hccl]' (isagellm-comm-hccl), plus torch-npu matching your torch",
            description="torch_npu's HCCL process group: Huawei Ascend NPUs (one per rank), HCCS within a host, RoCE "
            "between hosts",
        )
    )


@hookimpl
def sagellm_comm_topology_facts(topology: Topology) -> dict[str, Any]:
    """This host's NPUs from npu-smi (or torch_npu), appended to ``topology.devices``; a reason when there are
    none. Never raises."""
    from sagellm_comm_hccl.npu_topology import npu_facts

    return npu_facts(topology)
