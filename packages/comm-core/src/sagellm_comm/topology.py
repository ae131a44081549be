"""``Topology.discover()``: what this host looks like, enriched by plugins through a hook.

The core reports the host view only (host identity, CPU count, the devices torch sees, with the reason when there
are none); the comm-topology plugin adds NUMA, PCIe, NICs, links and the multi-node view through
``sagellm_comm_topology_facts``. ``to_descriptor()`` gives the protocol's ``CommTopologyDescriptor``.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

from sagellm_protocol import CommBackendType, CommTopologyDescriptor, TopologyType

__all__ = ["Device", "Topology"]


@dataclass
class Device:
    kind: str  # "cpu", "cuda", "npu", ...
    index: int
    name: str = ""
    memory_bytes: int = 0
    properties: dict[str, Any] = field(default_factory=dict)


def _node_id(hostname: str) -> str:
    override = os.environ.get("SAGELLM_COMM_NODE_ID")
    if override:
        return override
    try:
        with open("/etc/machine-id") as f:
            seed = f.read().strip()
    except OSError:
        seed = ""
    return hashlib.sha256(f"{hostname}:{seed}".encode()).hexdigest()[:16]


def _torch_devices() -> tuple[list[Device], str]:
    try:
        import torch
    except ImportError:
        return [], "torch is not installed"
    if not torch.cuda.is_available():
        built = getattr(torch.version, "cuda", None) or getattr(torch.version, "hip", None)
        why = "torch has no CUDA/ROCm build" if not built else f"torch (built for {built}) sees no GPU on this host"
        return [], why
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append(Device(kind="cuda", index=i, name=props.name, memory_bytes=int(props.total_memory)))
    return devices, "ok"


@dataclass
class Topology:
    hostname: str
    node_id: str
    cpu_count: int
    devices: list[Device] = field(default_factory=list)
    accelerator_reason: str = ""
    num_nodes: int = 1
    facts: dict[str, Any] = field(default_factory=dict)
    plugin_errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def discover(cls, enrich: bool = True) -> Topology:
        hostname = socket.gethostname()
        devices, reason = _torch_devices()
        topo = cls(hostname=hostname, node_id=_node_id(hostname), cpu_count=os.cpu_count() or 1,
                   devices=devices, accelerator_reason=reason)
        if enrich:
            from sagellm_comm.registry import plugin_manager

            for plugin, result, error in plugin_manager().call_each("sagellm_comm_topology_facts", topology=topo):
                if error is not None:
                    topo.plugin_errors[plugin] = f"{type(error).__name__}: {error}"
                elif result:
                    topo.facts[plugin] = result
        return topo

    @property
    def gpus_per_node(self) -> int:
        return sum(1 for d in self.devices if d.kind != "cpu")

    def to_descriptor(self, backend: CommBackendType | str | None = None) -> CommTopologyDescriptor:
        if backend is None:
            backend = CommBackendType.NCCL if self.gpus_per_node else CommBackendType.GLOO
        try:
            btype = CommBackendType(backend)
        except ValueError:
            btype = CommBackendType.CUSTOM
        ttype = TopologyType.FULLY_CONNECTED if self.num_nodes == 1 else TopologyType.HYBRID
        return CommTopologyDescriptor(
            topology_type=ttype, num_nodes=self.num_nodes, gpus_per_node=max(self.gpus_per_node, 1),
            backend=btype,
            metadata={"hostname": self.hostname, "node_id": self.node_id, "cpu_count": self.cpu_count,
                      "accelerators": self.gpus_per_node, "accelerator_reason": self.accelerator_reason,
                      "facts": self.facts},
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
