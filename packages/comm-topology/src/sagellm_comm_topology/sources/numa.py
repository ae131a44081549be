"""NUMA nodes: CPUs, memory and distances (``/sys/devices/system/node``)."""

from __future__ import annotations

import re

from sagellm_comm_topology.model import NumaNode
from sagellm_comm_topology.sources import SourceMissing
from sagellm_comm_topology.sysroot import SysRoot, parse_cpulist

__all__ = ["read_numa"]

NODE = "/sys/devices/system/node"


def _mem_total(root: SysRoot, node: int) -> int | None:
    for line in (root.read(f"{NODE}/node{node}/meminfo") or "").splitlines():
        m = re.match(r"Node\s+\d+\s+MemTotal:\s+(\d+)\s*kB", line)
        if m:
            return int(m.group(1)) * 1024
    return None


def read_numa(root: SysRoot) -> list[NumaNode]:
    online = root.read(f"{NODE}/online")
    ids = (
        parse_cpulist(online)
        if online is not None
        else sorted(int(n[4:]) for n in root.listdir(NODE) if re.fullmatch(r"node\d+", n))
    )
    if not ids:
        raise SourceMissing(f"no NUMA nodes under {NODE} (kernel without CONFIG_NUMA?)")
    has_cpu = root.read(f"{NODE}/has_cpu")
    with_cpu = set(parse_cpulist(has_cpu)) if has_cpu is not None else None
    nodes = []
    for n in ids:
        cpus = parse_cpulist(root.read(f"{NODE}/node{n}/cpulist") or "")
        mem = _mem_total(root, n)
        distances = [int(d) for d in (root.read(f"{NODE}/node{n}/distance") or "").split()]
        cpu_here = bool(cpus) if with_cpu is None else n in with_cpu
        if cpu_here and mem:
            kind = "cpu+memory"
        elif mem:
            kind = "memory-only"
        else:
            kind = "cpu-only"
        nodes.append(NumaNode(id=n, cpus=cpus, memory_bytes=mem, distances=distances, kind=kind))
    return nodes
