"""The native topology model: one host (:class:`HostTopology`) and the whole job (:class:`ClusterTopology`).

Plain dataclasses, serialisable to JSON (``to_dict``/``from_dict``, ``save``/``load``) so a topology can be pinned,
replayed or fed to tests. Bandwidths are GB/s (gigabytes per second, one direction), as the protocol's
``CommTopologyDescriptor`` uses them; latencies are microseconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "SCHEMA",
    "Accelerator",
    "CpuSocket",
    "CxlMemdev",
    "CxlRegion",
    "HostTopology",
    "Link",
    "Nic",
    "NumaNode",
    "PciDevice",
    "RankInfo",
    "RdmaDevice",
    "RdmaPort",
    "SourceStatus",
    "from_dict",
]

SCHEMA = "sagellm-comm-topology/1"
T = TypeVar("T")


@dataclass
class SourceStatus:
    """What one discovery source found: ``ok`` False with the reason when it is missing or failed."""

    name: str
    ok: bool
    detail: str = ""  # what it found, or why it is missing


@dataclass
class CpuSocket:
    id: int
    cpus: list[int] = field(default_factory=list)
    cores: int = 0
    numa_nodes: list[int] = field(default_factory=list)


@dataclass
class NumaNode:
    id: int
    cpus: list[int] = field(default_factory=list)
    memory_bytes: int | None = None
    distances: list[int] = field(default_factory=list)
    kind: str = "cpu+memory"  # cpu+memory | memory-only | cpu-only | cxl-memory


@dataclass
class PciDevice:
    bdf: str
    vendor: str = ""
    device: str = ""
    class_code: str = ""
    kind: str = ""  # network, display, storage, bridge, accelerator, memory, ...
    numa_node: int | None = None
    driver: str | None = None
    link_speed_gts: float | None = None
    link_width: int | None = None
    max_link_speed_gts: float | None = None
    max_link_width: int | None = None
    upstream: list[str] = field(default_factory=list)  # bridges from the root port down to the device

    @property
    def bandwidth_gbps(self) -> float | None:
        from sagellm_comm_topology.speeds import pcie_gbps

        return pcie_gbps(self.link_speed_gts, self.link_width)


@dataclass
class Nic:
    name: str
    kind: str = "ethernet"  # ethernet | infiniband | loopback | virtual | other
    state: str = "unknown"
    speed_mbps: int | None = None
    mtu: int | None = None
    mac: str = ""
    pci: str | None = None
    numa_node: int | None = None
    driver: str | None = None
    speed_reason: str = ""  # why speed_mbps is None

    @property
    def bandwidth_gbps(self) -> float | None:
        return None if self.speed_mbps is None else self.speed_mbps / 8000.0


@dataclass
class RdmaPort:
    port: int
    state: str = ""
    phys_state: str = ""
    rate: str = ""
    rate_gbits: float | None = None
    link_layer: str = ""


@dataclass
class RdmaDevice:
    name: str
    pci: str | None = None
    numa_node: int | None = None
    node_guid: str = ""
    netdevs: list[str] = field(default_factory=list)
    ports: list[RdmaPort] = field(default_factory=list)


@dataclass
class CxlMemdev:
    name: str
    pci: str | None = None
    numa_node: int | None = None
    ram_bytes: int = 0
    pmem_bytes: int = 0
    serial: str | None = None
    firmware: str | None = None


@dataclass
class CxlRegion:
    name: str
    mode: str | None = None
    size_bytes: int = 0
    interleave_ways: int | None = None
    interleave_granularity: int | None = None
    targets: list[str] = field(default_factory=list)  # memdev names
    numa_node: int | None = None  # the NUMA node its memory is onlined as (system-ram regions)


@dataclass
class Accelerator:
    kind: str  # torch device type: "cuda" (NVIDIA and AMD), "npu" (Ascend)
    index: int
    vendor: str  # nvidia | amd | huawei | other
    name: str = ""
    pci: str | None = None
    numa_node: int | None = None
    memory_bytes: int | None = None
    uuid: str | None = None
    source: str = ""  # nvml | amd-kfd | pci | plugin:<name>
    pcie_gbps: float | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{'npu' if self.kind == 'npu' else 'gpu'}{self.index}"


@dataclass
class Link:
    """A link between two endpoints: a node (``"host"``) or a device in it (``"host/gpu3"``).

    ``a == b`` (a node with itself) is the path between two ranks on that node through host memory.
    """

    a: str
    b: str
    kind: str  # nvlink | xgmi | pcie | host | ethernet | rdma | network
    bandwidth_gbps: float | None = None
    latency_us: float | None = None
    source: str = ""  # nvml | amd-kfd | sysfs | profiled | unknown
    detail: str = ""
    measured: dict[str, Any] | None = None

    @property
    def endpoints(self) -> tuple[str, str]:
        return (self.a, self.b) if self.a <= self.b else (self.b, self.a)


@dataclass
class RankInfo:
    rank: int
    node: str  # the node's name (HostTopology.name)
    local_rank: int = 0
    pid: int = 0
    device: str = "cpu"  # "cpu", "cuda:0", "npu:3"


@dataclass
class HostTopology:
    hostname: str
    node_id: str
    name: str = ""  # unique within a cluster (the hostname, suffixed if two hosts share one)
    cpu_model: str = ""
    sockets: list[CpuSocket] = field(default_factory=list)
    numa: list[NumaNode] = field(default_factory=list)
    pci: list[PciDevice] = field(default_factory=list)
    nics: list[Nic] = field(default_factory=list)
    rdma: list[RdmaDevice] = field(default_factory=list)
    cxl_memdevs: list[CxlMemdev] = field(default_factory=list)
    cxl_regions: list[CxlRegion] = field(default_factory=list)
    accelerators: list[Accelerator] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    sources: list[SourceStatus] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.hostname

    @property
    def cpu_count(self) -> int:
        return sum(len(s.cpus) for s in self.sockets)

    @property
    def core_count(self) -> int:
        return sum(s.cores for s in self.sockets)

    def source(self, name: str) -> SourceStatus | None:
        return next((s for s in self.sources if s.name == name), None)

    def physical_nics(self) -> list[Nic]:
        return [n for n in self.nics if n.kind in ("ethernet", "infiniband")]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------------------
# from_dict: rebuild nested dataclasses from their asdict() form, by the field type hints
# ------------------------------------------------------------------------------------------------------------
def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return _convert(arg, value)
            except (TypeError, ValueError, KeyError):
                continue
        return value
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return [_convert(arg, v) for v in value]
    if origin is dict:
        return dict(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_dict(tp, value)
    if tp is float and isinstance(value, int | float):
        return float(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build dataclass ``cls`` from a dict (unknown keys are ignored, missing ones take their defaults)."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} needs a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {
        f.name: _convert(hints[f.name], data[f.name])
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name in data
    }
    return cls(**kwargs)


def dump_json(data: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)
