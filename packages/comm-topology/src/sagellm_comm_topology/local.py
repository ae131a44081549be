"""``discover_host()``: this host's topology from every source, each failing soft into ``HostTopology.sources``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

from sagellm_comm_topology.model import Accelerator, HostTopology, Link, PciDevice, SourceStatus
from sagellm_comm_topology.sources import SourceMissing, amd, cpu, cxl, net, numa, nvml, pci, pci_accel, rdma
from sagellm_comm_topology.sources.host import hostname_of, node_id_of
from sagellm_comm_topology.sysroot import SysRoot

__all__ = ["NVML_SNAPSHOT_FILE", "discover_host"]

NVML_SNAPSHOT_FILE = "nvml.json"  # a recorded NVML snapshot, next to the recorded sys/ tree
T = TypeVar("T")


class _Runner:
    def __init__(self) -> None:
        self.statuses: list[SourceStatus] = []

    def __call__(self, name: str, fn: Callable[[], T], default: T, describe: Callable[[T], str] = str) -> T:
        try:
            result = fn()
        except SourceMissing as exc:
            self.statuses.append(SourceStatus(name, False, str(exc)))
            return default
        except Exception as exc:  # a source must never break discovery
            self.statuses.append(SourceStatus(name, False, f"{type(exc).__name__}: {exc}"))
            return default
        self.statuses.append(SourceStatus(name, True, describe(result)))
        return result


def _nvml_snapshot(root: SysRoot, snapshot: dict[str, Any] | str | os.PathLike[str] | None) -> dict[str, Any]:
    if isinstance(snapshot, dict):
        if snapshot.get("unavailable"):
            raise SourceMissing(str(snapshot["unavailable"]))
        return snapshot
    if snapshot is not None:
        with open(snapshot) as f:
            return json.load(f)
    if root.is_live:
        return nvml.capture_snapshot()
    recorded = root.root / NVML_SNAPSHOT_FILE
    if not recorded.is_file():
        raise SourceMissing(f"recorded tree without an NVML snapshot ({NVML_SNAPSHOT_FILE})")
    data = json.loads(recorded.read_text())
    if data.get("unavailable"):  # NVML was missing where the tree was recorded: replay that reason
        raise SourceMissing(str(data["unavailable"]))
    return data


def _count(what: str) -> Callable[[Any], str]:
    return lambda result: f"{len(result[0] if isinstance(result, tuple) else result)} {what}"


def _pcie_relation(a: PciDevice | None, b: PciDevice | None) -> str:
    if a is None or b is None:
        return "PCIe"
    if a.numa_node is not None and b.numa_node is not None and a.numa_node != b.numa_node:
        return f"PCIe across CPU sockets (NUMA {a.numa_node} <-> {b.numa_node})"
    common = 0
    for x, y in zip(a.upstream, b.upstream, strict=False):
        if x != y:
            break
        common += 1
    if common >= 2:
        return f"PCIe through switch {a.upstream[common - 1]}"
    return "PCIe through the host bridge"


def _pcie_links(host: str, accs: list[Accelerator], direct: list[Link], pci_list: list[PciDevice]) -> list[Link]:
    """Accelerator pairs with no NVLink/xGMI between them talk over PCIe: the slower of the two links."""
    linked = {ln.endpoints for ln in direct}
    by_bdf = {d.bdf: d for d in pci_list}
    out = []
    for i, a in enumerate(accs):
        for b in accs[i + 1 :]:
            ends = (f"{host}/{a.key}", f"{host}/{b.key}")
            if tuple(sorted(ends)) in linked:
                continue
            speeds = [s for s in (a.pcie_gbps, b.pcie_gbps) if s]
            out.append(
                Link(
                    a=ends[0],
                    b=ends[1],
                    kind="pcie",
                    bandwidth_gbps=min(speeds) if len(speeds) == 2 else None,
                    source="sysfs" if len(speeds) == 2 else "unknown",
                    detail=_pcie_relation(by_bdf.get(a.pci or ""), by_bdf.get(b.pci or "")),
                )
            )
    return out


def _annotate(host: HostTopology) -> None:
    """Cross-references between sources: NUMA of NICs/RDMA, sockets' NUMA nodes, CXL-backed NUMA nodes."""
    by_bdf = {d.bdf: d for d in host.pci}
    for item in [*host.nics, *host.rdma]:
        dev = by_bdf.get(item.pci or "")
        if dev is not None and item.numa_node is None:
            item.numa_node = dev.numa_node
    for sock in host.sockets:
        sock.numa_nodes = sorted(n.id for n in host.numa if set(n.cpus) & set(sock.cpus))
    cxl_nodes = {r.numa_node for r in host.cxl_regions if r.numa_node is not None}
    for node in host.numa:
        if node.id in cxl_nodes and node.kind == "memory-only":
            node.kind = "cxl-memory"


def discover_host(
    root: str | os.PathLike[str] | SysRoot = "/",
    *,
    hostname: str | None = None,
    node_id: str | None = None,
    nvml_snapshot: dict[str, Any] | str | os.PathLike[str] | None = None,
) -> HostTopology:
    """Everything this host (or a recorded tree below ``root``) says about itself. Never raises for a missing
    source: ``host.sources`` lists each source with ``ok`` and the reason."""
    sr = root if isinstance(root, SysRoot) else SysRoot(root)
    run = _Runner()
    name = hostname or hostname_of(sr)
    host = HostTopology(hostname=name, node_id=node_id or node_id_of(sr, name))
    host.cpu_model, host.sockets = run(
        "cpu",
        lambda: cpu.read_cpus(sr),
        ("", []),
        lambda r: (
            f"{len(r[1])} socket(s), {sum(s.cores for s in r[1])} cores, {sum(len(s.cpus) for s in r[1])} threads"
        ),
    )
    host.numa = run("numa", lambda: numa.read_numa(sr), [], _count("NUMA node(s)"))
    host.pci = run("pci", lambda: pci.read_pci(sr), [], _count("PCI device(s)"))
    host.nics = run("net", lambda: net.read_nics(sr), [], _count("interface(s)"))
    host.rdma = run("rdma", lambda: rdma.read_rdma(sr), [], _count("RDMA device(s)"))
    host.cxl_memdevs, host.cxl_regions = run(
        "cxl", lambda: cxl.read_cxl(sr), ([], []), lambda r: f"{len(r[0])} memdev(s), {len(r[1])} region(s)"
    )
    snapshot = run(
        "nvml",
        lambda: _nvml_snapshot(sr, nvml_snapshot),
        None,
        lambda s: f"{len(s.get('gpus', []))} GPU(s), driver {s.get('driver_version') or '?'}",
    )
    nv_accs, nv_links = nvml.parse_snapshot(snapshot, name, host.pci) if snapshot else ([], [])
    amd_accs, amd_links = run("amd-kfd", lambda: amd.read_amd(sr, name, host.pci), ([], []), _count("AMD GPU(s)"))
    known = [*nv_accs, *amd_accs]
    reasons = {s.name.split("-")[0]: s.detail for s in run.statuses if not s.ok}
    reasons = {"nvidia": reasons.get("nvml", ""), "amd": reasons.get("amd", "")}
    extra = pci_accel.pci_accelerators(sr, host.pci, known, reasons)
    host.accelerators = [*known, *extra]
    direct = [*nv_links, *amd_links]
    host.links = [*direct, *_pcie_links(name, host.accelerators, direct, host.pci)]
    host.sources = run.statuses
    _annotate(host)
    return host
