"""CPU sockets, cores and hardware threads (``/sys/devices/system/cpu``, model name from ``/proc/cpuinfo``)."""

from __future__ import annotations

import re

from sagellm_comm_topology.model import CpuSocket
from sagellm_comm_topology.sources import SourceMissing
from sagellm_comm_topology.sysroot import SysRoot, parse_cpulist

__all__ = ["read_cpus"]

CPU = "/sys/devices/system/cpu"


def _online(root: SysRoot) -> list[int]:
    text = root.read(f"{CPU}/online")
    if text is not None:
        return parse_cpulist(text)
    return sorted(int(n[3:]) for n in root.listdir(CPU) if re.fullmatch(r"cpu\d+", n))


def _model(root: SysRoot) -> str:
    for line in (root.read("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model name", "cpu model"):
            return value.strip()
    return ""


def read_cpus(root: SysRoot) -> tuple[str, list[CpuSocket]]:
    """(model name, sockets with their CPUs and core counts)."""
    cpus = _online(root)
    if not cpus:
        raise SourceMissing(f"no CPU list under {CPU}")
    by_socket: dict[int, list[int]] = {}
    cores: dict[int, set[tuple[int, int]]] = {}
    for cpu in cpus:
        topo = f"{CPU}/cpu{cpu}/topology"
        pkg = root.read_int(f"{topo}/physical_package_id")
        pkg = 0 if pkg is None or pkg < 0 else pkg
        core = root.read_int(f"{topo}/core_id")
        die = root.read_int(f"{topo}/die_id") or 0
        by_socket.setdefault(pkg, []).append(cpu)
        cores.setdefault(pkg, set()).add((die, cpu if core is None else core))
    sockets = [CpuSocket(id=pkg, cpus=sorted(c), cores=len(cores[pkg])) for pkg, c in sorted(by_socket.items())]
    return _model(root), sockets
