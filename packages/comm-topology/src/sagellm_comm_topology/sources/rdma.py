"""RDMA devices (InfiniBand, RoCE): ports with state, rate and link layer (``/sys/class/infiniband``)."""

from __future__ import annotations

from sagellm_comm_topology.model import RdmaDevice, RdmaPort
from sagellm_comm_topology.sources import SourceMissing
from sagellm_comm_topology.sources.pci import bdf_in_path
from sagellm_comm_topology.speeds import parse_rdma_rate
from sagellm_comm_topology.sysroot import SysRoot

__all__ = ["read_rdma"]

IB = "/sys/class/infiniband"


def _state(text: str | None) -> str:
    """``"4: ACTIVE"`` -> ``"ACTIVE"``."""
    return (text or "").split(":", 1)[-1].strip()


def read_rdma(root: SysRoot) -> list[RdmaDevice]:
    if not root.exists(IB):
        raise SourceMissing(f"no {IB} (no RDMA device, or the ib_core driver is not loaded)")
    devices = []
    for name in root.listdir(IB):
        base = f"{IB}/{name}"
        ports = []
        for p in root.listdir(f"{base}/ports"):
            pb = f"{base}/ports/{p}"
            rate = root.read(f"{pb}/rate") or ""
            ports.append(
                RdmaPort(
                    port=int(p),
                    state=_state(root.read(f"{pb}/state")),
                    phys_state=_state(root.read(f"{pb}/phys_state")),
                    rate=rate,
                    rate_gbits=parse_rdma_rate(rate),
                    link_layer=root.read(f"{pb}/link_layer") or "",
                )
            )
        devices.append(
            RdmaDevice(
                name=name,
                pci=bdf_in_path(root.real(f"{base}/device")),
                node_guid=root.read(f"{base}/node_guid") or "",
                netdevs=root.listdir(f"{base}/device/net"),
                ports=ports,
            )
        )
    return devices
