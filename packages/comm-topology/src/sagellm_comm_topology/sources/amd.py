"""AMD GPUs and their xGMI links from the KFD topology the amdgpu driver exports (``/sys/class/kfd/kfd/topology``,
the same tree ROCm's runtime reads). Link bandwidths are the driver's ``max_bandwidth`` (MB/s)."""

from __future__ import annotations

import re

from sagellm_comm_topology.model import Accelerator, Link, PciDevice
from sagellm_comm_topology.sources import SourceMissing
from sagellm_comm_topology.sysroot import SysRoot

__all__ = ["read_amd"]

KFD = "/sys/class/kfd/kfd/topology/nodes"
IOLINK_XGMI = 11  # CRAT_IOLINK_TYPE_XGMI
IOLINK_PCIE = 2  # CRAT_IOLINK_TYPE_PCIEXPRESS


def _props(root: SysRoot, path: str) -> dict[str, int]:
    out = {}
    for line in (root.read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value.strip())
        except ValueError:
            continue
    return out


def _bdf(props: dict[str, int]) -> str | None:
    loc = props.get("location_id")
    if not loc:
        return None
    return f"{props.get('domain', 0):04x}:{loc >> 8 & 0xFF:02x}:{loc >> 3 & 0x1F:02x}.{loc & 0x7}"


def read_amd(root: SysRoot, host: str, pci: list[PciDevice]) -> tuple[list[Accelerator], list[Link]]:
    nodes = sorted(int(n) for n in root.listdir(KFD) if re.fullmatch(r"\d+", n))
    if not nodes:
        raise SourceMissing(f"no {KFD} (no AMD GPU, or the amdgpu driver is not loaded)")
    by_pci = {d.bdf: d for d in pci}
    gpu_of: dict[int, Accelerator] = {}
    for n in nodes:
        props = _props(root, f"{KFD}/{n}/properties")
        if not props.get("simd_count"):
            continue  # a CPU node
        bdf = _bdf(props)
        dev = by_pci.get(bdf or "")
        name = root.read(f"{KFD}/{n}/name") or ""
        acc = Accelerator(
            kind="cuda",
            index=len(gpu_of),
            vendor="amd",
            name=name,
            pci=bdf,
            numa_node=dev.numa_node if dev else None,
            source="amd-kfd",
            pcie_gbps=dev.bandwidth_gbps if dev else None,
            properties={"kfd_node": n, "gfx_target_version": props.get("gfx_target_version")},
        )
        gpu_of[n] = acc
    links = []
    for n, acc in gpu_of.items():
        for link in root.listdir(f"{KFD}/{n}/io_links"):
            lp = _props(root, f"{KFD}/{n}/io_links/{link}/properties")
            peer = gpu_of.get(lp.get("node_to", -1))
            if lp.get("type") != IOLINK_XGMI or peer is None or peer.index <= acc.index:
                continue
            mbs = lp.get("max_bandwidth") or 0
            links.append(
                Link(
                    a=f"{host}/{acc.key}",
                    b=f"{host}/{peer.key}",
                    kind="xgmi",
                    bandwidth_gbps=mbs / 1000.0 if mbs else None,
                    source="amd-kfd",
                    detail=f"xGMI, weight {lp.get('weight')}",
                )
            )
    return list(gpu_of.values()), links
