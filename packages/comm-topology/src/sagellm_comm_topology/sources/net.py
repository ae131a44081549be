"""Network interfaces: kind, state, speed, MTU, the PCI device behind them (``/sys/class/net``)."""

from __future__ import annotations

from sagellm_comm_topology.model import Nic
from sagellm_comm_topology.sources import SourceMissing
from sagellm_comm_topology.sources.pci import bdf_in_path
from sagellm_comm_topology.sysroot import SysRoot

__all__ = ["read_nics"]

NET = "/sys/class/net"
_ARPHRD = {1: "ethernet", 32: "infiniband", 772: "loopback"}


def _speed(root: SysRoot, base: str, state: str) -> tuple[int | None, str]:
    raw = root.read(f"{base}/speed")
    if raw is None:
        return None, "the driver reports no speed" + (" (link is down)" if state != "up" else "")
    try:
        value = int(raw)
    except ValueError:
        return None, f"unreadable speed {raw!r}"
    if value <= 0:
        return None, f"the driver reports speed {value} (unknown; usual for virtio and other virtual NICs)"
    return value, ""


def read_nics(root: SysRoot) -> list[Nic]:
    names = root.listdir(NET)
    if not names:
        raise SourceMissing(f"no network interfaces under {NET}")
    nics = []
    for name in names:
        base = f"{NET}/{name}"
        real = root.real(base) or ""
        arphrd = root.read_int(f"{base}/type")
        kind = _ARPHRD.get(arphrd or -1, "other")
        pci = bdf_in_path(real)
        if kind == "ethernet" and (real.startswith("/sys/devices/virtual/") or not root.exists(f"{base}/device")):
            kind = "virtual"
        state = root.read(f"{base}/operstate") or "unknown"
        speed, why = _speed(root, base, state) if kind != "loopback" else (None, "")
        mtu = root.read_int(f"{base}/mtu")
        nics.append(
            Nic(
                name=name,
                kind=kind,
                state=state,
                speed_mbps=speed,
                mtu=mtu,
                mac=root.read(f"{base}/address") or "",
                pci=pci,
                driver=root.link_name(f"{base}/device/driver"),
                speed_reason=why,
            )
        )
    return nics
