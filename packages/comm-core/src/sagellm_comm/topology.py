"""``Topology.discover()``: what this host looks like, enriched by plugins through hooks.

The core reports the host view only (host identity, CPU count, the devices torch sees, with the reason when there
are none). A topology plugin (isagellm-comm-topology) adds NUMA, PCIe, NICs, RDMA, CXL, accelerators and their
links through ``sagellm_comm_topology_facts``, the multi-rank view through ``sagellm_comm_topology_gather``
(``Topology.discover(backend=...)``, a collective) and the descriptor's bandwidths through
``sagellm_comm_topology_descriptor``. ``to_descriptor()`` gives the protocol's ``CommTopologyDescriptor``.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

from sagellm_protocol import CommBackendType, CommTopologyDescriptor, TopologyType

__all__ = ["TOPOLOGY_FILE_ENV", "Device", "Topology"]

# A topology JSON file that pins (replays) the topology instead of discovering it; read by topology plugins.
TOPOLOGY_FILE_ENV = "SAGELLM_COMM_TOPOLOGY_FILE"
"""The environment variable naming a topology JSON file that topology plugins replay instead of discovering."""

NO_PLUGIN_NOTE = (
    "host-only view: install a topology plugin (pip install 'isagellm-comm[topology]') for NUMA, "
    "PCIe, NICs, links, the multi-node view and link profiling"
)


@dataclass
class Device:
    """One device of a host: ``kind`` (``"cpu"``, ``"cuda"``, ``"npu"``, ...), its index, name, memory and the
    properties plugins add."""

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
    """What this host (or, discovered through a backend, the whole job) looks like: host identity, CPU count, the
    devices torch sees (or why none), the number of nodes, the facts each plugin contributed (by plugin name), the
    plugins that failed and notes. Build one with ``Topology.discover()``."""

    hostname: str
    node_id: str
    cpu_count: int
    devices: list[Device] = field(default_factory=list)
    accelerator_reason: str = ""
    num_nodes: int = 1
    facts: dict[str, Any] = field(default_factory=dict)
    plugin_errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def discover(cls, enrich: bool = True, *, backend: Any = None, group: Any = None) -> Topology:
        """This host's view (plugins enrich it unless ``enrich`` is False).

        With ``backend`` (an initialized ``CommBackend``) or ``group`` (a ``CommGroup``), discovery is a
        collective: every rank of the group must call it, and a topology plugin returns the whole job's map
        (nodes, ranks per node, links). Without such a plugin the host-only view is returned with a note.
        """
        hostname = socket.gethostname()
        devices, reason = _torch_devices()
        topo = cls(
            hostname=hostname,
            node_id=_node_id(hostname),
            cpu_count=os.cpu_count() or 1,
            devices=devices,
            accelerator_reason=reason,
        )
        if not enrich:
            return topo
        from sagellm_comm.registry import plugin_manager

        for plugin, result, error in plugin_manager().call_each("sagellm_comm_topology_facts", topology=topo):
            if error is not None:
                topo.plugin_errors[plugin] = f"{type(error).__name__}: {error}"
            elif result:
                topo.facts[plugin] = result
        if backend is None and group is not None:
            backend = group.backend
        if backend is not None:
            found = plugin_manager().call_first(
                "sagellm_comm_topology_gather", isolate=False, topology=topo, backend=backend, group=group
            )
            if found is None:
                topo.notes.append(NO_PLUGIN_NOTE + " (each rank reports its own host only)")
            else:
                topo.facts[found[0]] = found[1]
        if not plugin_manager().implementers("sagellm_comm_topology_descriptor"):
            # facts from backend plugins (a library version, NPUs) do not make a topology model: no plugin gives one
            topo.notes.append(NO_PLUGIN_NOTE)
        return topo

    @property
    def gpus_per_node(self) -> int:
        return sum(1 for d in self.devices if d.kind != "cpu")

    def to_descriptor(self, backend: CommBackendType | str | None = None) -> CommTopologyDescriptor:
        """The protocol descriptor: from a topology plugin's model when one answers, else from the host view."""
        meta = {
            "hostname": self.hostname,
            "node_id": self.node_id,
            "cpu_count": self.cpu_count,
            "accelerators": self.gpus_per_node,
            "accelerator_reason": self.accelerator_reason,
            "facts": self.facts,
        }
        key = None if backend is None else str(getattr(backend, "value", backend))
        from sagellm_comm.registry import plugin_manager

        found = plugin_manager().call_first(
            "sagellm_comm_topology_descriptor", isolate=True, topology=self, backend=key
        )
        if found is not None and isinstance(found[1], CommTopologyDescriptor):
            desc = found[1]
            return desc.model_copy(update={"metadata": {**meta, **desc.metadata, "descriptor_from": found[0]}})
        if backend is None:
            kinds = {d.kind for d in self.devices}
            backend = (
                CommBackendType.HCCL
                if "npu" in kinds
                else CommBackendType.NCCL
                if self.gpus_per_node
                else CommBackendType.GLOO
            )
        try:
            btype = CommBackendType(backend)
        except ValueError:
            btype = CommBackendType.CUSTOM
        ttype = TopologyType.FULLY_CONNECTED if self.num_nodes == 1 else TopologyType.HYBRID
        return CommTopologyDescriptor(
            topology_type=ttype,
            num_nodes=self.num_nodes,
            gpus_per_node=max(self.gpus_per_node, 1),
            backend=btype,
            metadata=meta,
        )

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain dicts and lists (JSON-serialisable when the plugins' facts are)."""
        return asdict(self)
