"""NVIDIA GPUs and their NVLink links, through NVML (nvidia-ml-py).

NVML facts cannot come from sysfs, so this source works on a *snapshot*: ``capture_snapshot()`` records what NVML
reports on the live system as a plain dict (JSON-serialisable), and ``parse_snapshot()`` turns a snapshot into
accelerators and links. A recorded snapshot (``nvml.json`` next to a recorded sysfs tree) replays a GPU box on a
machine without one.
"""

from __future__ import annotations

from typing import Any

from sagellm_comm_topology.model import Accelerator, Link, PciDevice
from sagellm_comm_topology.sources import SourceMissing
from sagellm_comm_topology.speeds import NVLINK_NAMES, nvlink_gbps, pcie_gbps

__all__ = ["capture_snapshot", "normalize_bus_id", "parse_snapshot"]

PCIE_GEN_GTS = {1: 2.5, 2: 5.0, 3: 8.0, 4: 16.0, 5: 32.0, 6: 64.0}
_REMOTE_TYPES = {0: "gpu", 1: "ibmnpu", 2: "switch", 0xFF: "unknown"}


def normalize_bus_id(bus_id: str | bytes | None) -> str | None:
    """NVML's ``"00000000:18:00.0"`` -> sysfs's ``"0000:18:00.0"``."""
    if not bus_id:
        return None
    text = bus_id.decode() if isinstance(bus_id, bytes) else str(bus_id)
    parts = text.strip().lower().split(":")
    if len(parts) != 3:
        return text.lower()
    return f"{int(parts[0], 16):04x}:{parts[1]}:{parts[2]}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _try(fn: Any, *args: Any) -> Any:
    import pynvml

    try:
        return fn(*args)
    except (pynvml.NVMLError, AttributeError):
        return None


def _nvlinks(pynvml: Any, handle: Any) -> list[dict[str, Any]]:
    links = []
    for link in range(getattr(pynvml, "NVML_NVLINK_MAX_LINKS", 18)):
        try:
            active = pynvml.nvmlDeviceGetNvLinkState(handle, link) == pynvml.NVML_FEATURE_ENABLED
        except pynvml.NVMLError:
            break  # no NVLink, or past the last link of this GPU
        remote = _try(pynvml.nvmlDeviceGetNvLinkRemotePciInfo_v2, handle, link) if active else None
        rtype = _try(pynvml.nvmlDeviceGetNvLinkRemoteDeviceType, handle, link) if active else None
        links.append(
            {
                "link": link,
                "active": bool(active),
                "version": _try(pynvml.nvmlDeviceGetNvLinkVersion, handle, link) if active else None,
                "remote_pci_bus_id": normalize_bus_id(getattr(remote, "busId", None)) if remote is not None else None,
                "remote_type": _REMOTE_TYPES.get(rtype, "unknown") if rtype is not None else None,
            }
        )
    return links


def capture_snapshot() -> dict[str, Any]:
    """What NVML reports about every GPU, as a dict; raises SourceMissing with the reason when NVML is absent."""
    try:
        import pynvml
    except ImportError as exc:
        raise SourceMissing(f"nvidia-ml-py is not installed ({exc})") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        raise SourceMissing("NVML library not found (libnvidia-ml.so.1): no NVIDIA driver on this host") from None
    except pynvml.NVMLError_DriverNotLoaded:
        raise SourceMissing("NVIDIA driver is not loaded") from None
    except pynvml.NVMLError as exc:
        raise SourceMissing(f"NVML could not start: {exc}") from None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = _try(pynvml.nvmlDeviceGetMemoryInfo, h)
            gpus.append(
                {
                    "index": i,
                    "name": _text(pynvml.nvmlDeviceGetName(h)),
                    "uuid": _text(_try(pynvml.nvmlDeviceGetUUID, h) or ""),
                    "pci_bus_id": normalize_bus_id(pynvml.nvmlDeviceGetPciInfo(h).busId),
                    "memory_total": int(mem.total) if mem is not None else None,
                    "cuda_compute_capability": list(_try(pynvml.nvmlDeviceGetCudaComputeCapability, h) or []),
                    "pcie_gen": _try(pynvml.nvmlDeviceGetCurrPcieLinkGeneration, h),
                    "pcie_width": _try(pynvml.nvmlDeviceGetCurrPcieLinkWidth, h),
                    "nvlinks": _nvlinks(pynvml, h),
                }
            )
        return {"source": "nvml", "driver_version": _text(_try(pynvml.nvmlSystemGetDriverVersion) or ""), "gpus": gpus}
    finally:
        _try(pynvml.nvmlShutdown)


def _accelerators(snapshot: dict[str, Any], pci: dict[str, PciDevice]) -> list[Accelerator]:
    out = []
    for g in snapshot.get("gpus", []):
        bdf = normalize_bus_id(g.get("pci_bus_id"))
        dev = pci.get(bdf or "")
        gts = PCIE_GEN_GTS.get(g.get("pcie_gen") or 0)
        cc = g.get("cuda_compute_capability") or []
        props = {"cuda_compute_capability": ".".join(map(str, cc))} if cc else {}
        out.append(
            Accelerator(
                kind="cuda",
                index=int(g["index"]),
                vendor="nvidia",
                name=g.get("name", ""),
                pci=bdf,
                numa_node=dev.numa_node if dev else None,
                memory_bytes=g.get("memory_total"),
                uuid=g.get("uuid") or None,
                source="nvml",
                pcie_gbps=pcie_gbps(gts, g.get("pcie_width")),
                properties=props,
            )
        )
    return out


def _version_label(version: int | None) -> str:
    return f"NVLink {NVLINK_NAMES.get(version or 0, '?')}"


def _links(snapshot: dict[str, Any], host: str, accs: list[Accelerator]) -> list[Link]:
    by_bdf = {a.pci: a for a in accs if a.pci}
    direct: dict[tuple[int, int], list[int | None]] = {}
    switched: dict[int, list[int | None]] = {}
    for g in snapshot.get("gpus", []):
        me = int(g["index"])
        for link in g.get("nvlinks", []):
            if not link.get("active"):
                continue
            peer = by_bdf.get(link.get("remote_pci_bus_id") or "")
            if peer is not None and link.get("remote_type") in (None, "gpu", "unknown"):
                if me < peer.index:
                    direct.setdefault((me, peer.index), []).append(link.get("version"))
            elif link.get("remote_type") in ("switch", None, "unknown"):
                switched.setdefault(me, []).append(link.get("version"))
    links = []
    for (i, j), versions in sorted(direct.items()):
        v = versions[0]
        links.append(
            Link(
                a=f"{host}/gpu{i}",
                b=f"{host}/gpu{j}",
                kind="nvlink",
                bandwidth_gbps=nvlink_gbps(v, len(versions)),
                source="nvml",
                detail=f"{len(versions)} x {_version_label(v)}",
            )
        )
    on_switch = sorted(switched)
    for x, i in enumerate(on_switch):
        for j in on_switch[x + 1 :]:
            if (i, j) in direct:
                continue
            n = min(len(switched[i]), len(switched[j]))
            v = switched[i][0]
            links.append(
                Link(
                    a=f"{host}/gpu{i}",
                    b=f"{host}/gpu{j}",
                    kind="nvlink",
                    bandwidth_gbps=nvlink_gbps(v, n),
                    source="nvml",
                    detail=f"NVSwitch, {n} x {_version_label(v)}",
                )
            )
    return links


def parse_snapshot(snapshot: dict[str, Any], host: str, pci: list[PciDevice]) -> tuple[list[Accelerator], list[Link]]:
    """Accelerators and NVLink links (GPU-GPU direct, or every pair on the NVSwitch fabric) of a snapshot."""
    accs = _accelerators(snapshot, {d.bdf: d for d in pci})
    return accs, _links(snapshot, host, accs)
