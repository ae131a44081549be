"""CXL memory devices and regions (``/sys/bus/cxl``): capacity, the PCI device, interleave, the NUMA node a
system-RAM region is onlined as (through its DAX device's ``target_node``)."""

from __future__ import annotations

import os
import re

from sagellm_comm_topology.model import CxlMemdev, CxlRegion
from sagellm_comm_topology.sources import SourceMissing
from sagellm_comm_topology.sources.pci import bdf_in_path
from sagellm_comm_topology.sysroot import SysRoot

__all__ = ["read_cxl"]

CXL = "/sys/bus/cxl/devices"


def _hex(root: SysRoot, path: str) -> int | None:
    text = root.read(path)
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


def _memdev(root: SysRoot, name: str) -> CxlMemdev:
    base = f"{CXL}/{name}"
    numa = root.read_int(f"{base}/numa_node")
    return CxlMemdev(
        name=name,
        pci=bdf_in_path(root.real(base)),
        numa_node=None if numa is None or numa < 0 else numa,
        ram_bytes=_hex(root, f"{base}/ram/size") or 0,
        pmem_bytes=_hex(root, f"{base}/pmem/size") or 0,
        serial=root.read(f"{base}/serial"),
        firmware=root.read(f"{base}/firmware_version"),
    )


def _target_memdev(root: SysRoot, decoder: str) -> str:
    """Endpoint decoder ``decoderN.M`` -> the memdev whose endpoint port owns it (``endpointN/uport``)."""
    real = root.real(f"{CXL}/{decoder}")
    if real:
        port = os.path.basename(os.path.dirname(real))
        uport = root.real(f"{CXL}/{port}/uport")
        if uport:
            return os.path.basename(uport)
    return decoder


def _region_node(root: SysRoot, name: str) -> int | None:
    base = f"{CXL}/{name}"
    for child in root.listdir(base):
        if child.startswith("dax_region"):
            for dax in root.listdir(f"{base}/{child}"):
                if re.fullmatch(r"dax\d+\.\d+", dax):
                    node = root.read_int(f"{base}/{child}/{dax}/target_node")
                    if node is not None and node >= 0:
                        return node
    return None


def _region(root: SysRoot, name: str) -> CxlRegion:
    base = f"{CXL}/{name}"
    ways = root.read_int(f"{base}/interleave_ways")
    targets = [root.read(f"{base}/target{i}") for i in range(ways or 0)]
    return CxlRegion(
        name=name,
        mode=root.read(f"{base}/mode"),
        size_bytes=_hex(root, f"{base}/size") or 0,
        interleave_ways=ways,
        interleave_granularity=root.read_int(f"{base}/interleave_granularity"),
        targets=[_target_memdev(root, t) for t in targets if t],
        numa_node=_region_node(root, name),
    )


def read_cxl(root: SysRoot) -> tuple[list[CxlMemdev], list[CxlRegion]]:
    if not root.exists(CXL):
        raise SourceMissing(f"no {CXL} (no CXL bus: no CXL device, or the cxl_core driver is not loaded)")
    names = root.listdir(CXL)
    memdevs = [_memdev(root, n) for n in names if re.fullmatch(r"mem\d+", n)]
    regions = [_region(root, n) for n in names if re.fullmatch(r"region\d+", n)]
    return memdevs, regions
