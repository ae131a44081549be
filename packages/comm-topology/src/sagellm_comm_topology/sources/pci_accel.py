"""Accelerators seen on the PCI bus only: GPUs/NPUs whose management library is absent (the reason is kept), and
Ascend NPUs (vendor 0x19e5, processing-accelerator class), named by device id; ``/dev/davinciN`` tells whether the
Ascend driver is loaded."""

from __future__ import annotations

import re

from sagellm_comm_topology.model import Accelerator, PciDevice
from sagellm_comm_topology.sysroot import SysRoot

__all__ = ["ASCEND_NAMES", "pci_accelerators"]

VENDORS = {"0x10de": "nvidia", "0x1002": "amd", "0x19e5": "huawei"}
# Huawei's PCI device ids of the Ascend parts (as `lspci` shows them: 19e5:d801 etc.)
ASCEND_NAMES = {
    "0xd100": "Ascend 310",
    "0xd500": "Ascend 310P",
    "0xd801": "Ascend 910",
    "0xd802": "Ascend 910B",
    "0xd803": "Ascend 910C",
}


def _is_accelerator(dev: PciDevice) -> str | None:
    vendor = VENDORS.get(dev.vendor.lower())
    if vendor is None:
        return None
    if vendor == "huawei":
        return vendor if dev.kind == "accelerator" and dev.device.lower() in ASCEND_NAMES else None
    return vendor if dev.kind in ("display", "accelerator") else None


def pci_accelerators(
    root: SysRoot, pci: list[PciDevice], known: list[Accelerator], reasons: dict[str, str]
) -> list[Accelerator]:
    """Accelerators on the bus that ``known`` (found by a vendor library) does not hold; ``reasons[vendor]`` says
    why the vendor's library did not describe them. Indices continue after the known ones of the same kind."""
    davinci = sorted(int(m.group(1)) for n in root.listdir("/dev") if (m := re.fullmatch(r"davinci(\d+)", n)))
    out: list[Accelerator] = []
    counters: dict[str, int] = {}
    for acc in known:
        counters[acc.kind] = max(counters.get(acc.kind, 0), acc.index + 1)
    seen = {a.pci for a in known if a.pci}
    for dev in pci:
        vendor = _is_accelerator(dev)
        if vendor is None or dev.bdf in seen:
            continue
        kind = "npu" if vendor == "huawei" else "cuda"
        index = counters.get(kind, 0)
        counters[kind] = index + 1
        props: dict[str, object] = {"device_id": dev.device}
        if vendor == "huawei":
            name = ASCEND_NAMES[dev.device.lower()]
            props["driver_loaded"] = bool(davinci)
            why = "" if davinci else "no /dev/davinci* (the Ascend driver is not loaded)"
        else:
            name = f"{vendor.upper()} GPU {dev.device}"
            why = reasons.get(vendor, "")
        if why:
            props["note"] = why
        out.append(
            Accelerator(
                kind=kind,
                index=index,
                vendor=vendor,
                name=name,
                pci=dev.bdf,
                numa_node=dev.numa_node,
                source="pci",
                pcie_gbps=dev.bandwidth_gbps,
                properties=props,
            )
        )
    return out
