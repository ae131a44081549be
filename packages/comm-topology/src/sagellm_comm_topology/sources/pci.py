"""PCI(e) devices: ids, class, NUMA affinity, driver, link rate and width, the bridges above them (``/sys/bus/pci``)."""

from __future__ import annotations

import re

from sagellm_comm_topology.model import PciDevice
from sagellm_comm_topology.sources import SourceMissing
from sagellm_comm_topology.speeds import parse_gts
from sagellm_comm_topology.sysroot import SysRoot

__all__ = ["BDF_RE", "bdf_in_path", "class_kind", "read_pci"]

PCI = "/sys/bus/pci/devices"
BDF_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")

# PCI base class -> kind (the PCI-SIG class codes, as in pci.ids)
_BASE_CLASS = {
    0x00: "unclassified",
    0x01: "storage",
    0x02: "network",
    0x03: "display",
    0x04: "multimedia",
    0x05: "memory",
    0x06: "bridge",
    0x07: "communication",
    0x08: "system",
    0x09: "input",
    0x0B: "processor",
    0x0C: "serial-bus",
    0x0D: "wireless",
    0x10: "encryption",
    0x11: "signal-processing",
    0x12: "accelerator",
    0xFF: "unassigned",
}


def class_kind(class_code: str) -> str:
    try:
        value = int(class_code, 16)
    except ValueError:
        return "unknown"
    if value >> 8 == 0x0502:
        return "cxl"  # memory controller, CXL sub-class
    if value >> 8 == 0x0207:
        return "infiniband"
    return _BASE_CLASS.get(value >> 16, "other")


def bdf_in_path(path: str | None) -> str | None:
    """The last PCI address in a sysfs device path (``.../0000:00:03.0/virtio2/net/eth0`` -> ``0000:00:03.0``)."""
    if not path:
        return None
    found = [p for p in path.split("/") if BDF_RE.match(p)]
    return found[-1] if found else None


def _numa(root: SysRoot, base: str) -> int | None:
    n = root.read_int(f"{base}/numa_node")
    return None if n is None or n < 0 else n


def read_pci(root: SysRoot) -> list[PciDevice]:
    names = [n for n in root.listdir(PCI) if BDF_RE.match(n)]
    if not names:
        raise SourceMissing(f"no PCI devices under {PCI}")
    devices = []
    for bdf in names:
        base = f"{PCI}/{bdf}"
        class_code = root.read(f"{base}/class") or ""
        real = root.real(base) or ""
        upstream = [p for p in real.split("/") if BDF_RE.match(p) and p != bdf]
        devices.append(
            PciDevice(
                bdf=bdf,
                vendor=root.read(f"{base}/vendor") or "",
                device=root.read(f"{base}/device") or "",
                class_code=class_code,
                kind=class_kind(class_code),
                numa_node=_numa(root, base),
                driver=root.link_name(f"{base}/driver"),
                link_speed_gts=parse_gts(root.read(f"{base}/current_link_speed")),
                link_width=root.read_int(f"{base}/current_link_width"),
                max_link_speed_gts=parse_gts(root.read(f"{base}/max_link_speed")),
                max_link_width=root.read_int(f"{base}/max_link_width"),
                upstream=upstream,
            )
        )
    return devices
