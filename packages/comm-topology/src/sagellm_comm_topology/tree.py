"""A readable tree of a topology (rich): nodes > sockets > NUMA nodes > devices, NICs, links with their speeds."""

from __future__ import annotations

from rich.text import Text
from rich.tree import Tree

from sagellm_comm_topology.cluster import ClusterTopology
from sagellm_comm_topology.model import Accelerator, CxlMemdev, HostTopology, Link, Nic, NumaNode, PciDevice, RdmaDevice

__all__ = ["build_tree", "fmt_bytes", "fmt_gbps", "link_text"]


def _add(tree: Tree, label: object) -> Tree:
    """Add a child; plain strings are literal text (no rich markup, no :emoji: codes: PCI addresses have colons)."""
    return tree.add(Text(label) if isinstance(label, str) else label)  # type: ignore[arg-type]


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    if n == 0:
        return "0 B"
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def fmt_gbps(gbps: float | None) -> str:
    if gbps is None:
        return "?"
    if gbps >= 1:
        return f"{gbps:.1f} GB/s"
    return f"{gbps * 1000:.1f} MB/s"


def _cpus(cpus: list[int]) -> str:
    if not cpus:
        return "no CPUs"
    ranges, start, prev = [], cpus[0], cpus[0]
    for c in [*cpus[1:], None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        ranges.append(f"{start}-{prev}" if prev != start else f"{start}")
        if c is not None:
            start = prev = c
    return "cpus " + ",".join(ranges)


def link_text(link: Link, cluster: ClusterTopology | None = None) -> str:
    """``"nvlink 450.0 GB/s (nvml: NVSwitch, 18 x NVLink 4.0)"`` plus the measured numbers when profiled."""
    ends = f"{link.a} (between its ranks)" if link.a == link.b else f"{link.a} <-> {link.b}"
    nominal = f"{fmt_gbps(link.bandwidth_gbps)} nominal" if link.bandwidth_gbps else "nominal speed unknown"
    text = f"{ends}: {link.kind}, {nominal}"
    if link.measured:
        m = link.measured
        text += (
            f"; measured {fmt_gbps(m.get('beta_gbps'))}, latency {m.get('alpha_us', 0):.1f} us "
            f"({m.get('backend')}, ranks {m.get('a')}<->{m.get('b')})"
        )
    elif link.bandwidth_gbps is None:
        text += "; not profiled (sagellm-comm topology --profile)"
    if link.detail:
        text += f" [{link.detail}]"
    return text


def _acc(a: Accelerator) -> str:
    extra = f", {fmt_bytes(a.memory_bytes)}" if a.memory_bytes else ""
    pcie = f", PCIe {fmt_gbps(a.pcie_gbps)}" if a.pcie_gbps else ""
    note = f" ({a.properties['note']})" if a.properties.get("note") else ""
    return f"{a.key}: {a.name or a.vendor}{extra}{pcie} [{a.pci or 'no PCI address'}, {a.source}]{note}"


def _nic(n: Nic) -> str:
    speed = (
        f"{n.speed_mbps} Mb/s ({fmt_gbps(n.bandwidth_gbps)})"
        if n.speed_mbps
        else (f"speed unknown: {n.speed_reason}" if n.speed_reason else "no speed")
    )
    where = f", pci {n.pci}" if n.pci else ""
    return f"NIC {n.name}: {n.kind}, {n.state}, {speed}, mtu {n.mtu}{where}"


def _rdma(d: RdmaDevice) -> str:
    ports = "; ".join(f"port {p.port} {p.state} {p.rate or '?'} {p.link_layer}" for p in d.ports) or "no ports"
    return f"RDMA {d.name}: {ports}" + (f" (netdev {', '.join(d.netdevs)})" if d.netdevs else "")


def _memdev(m: CxlMemdev) -> str:
    return f"CXL {m.name}: {fmt_bytes(m.ram_bytes)} volatile, {fmt_bytes(m.pmem_bytes)} persistent [{m.pci}]"


def _pci(d: PciDevice) -> str:
    link = (
        f", PCIe {d.link_speed_gts:g} GT/s x{d.link_width} = {fmt_gbps(d.bandwidth_gbps)}" if d.bandwidth_gbps else ""
    )
    return f"PCI {d.bdf}: {d.kind} {d.vendor}:{d.device}" + (f" ({d.driver})" if d.driver else "") + link


def _device_lines(host: HostTopology, numa: int | None) -> list[str]:
    """Everything attached to NUMA node ``numa`` (None: devices without NUMA affinity)."""
    lines = [_acc(a) for a in host.accelerators if a.numa_node == numa]
    lines += [_nic(n) for n in host.nics if n.numa_node == numa and n.kind != "loopback" and (n.pci or numa is None)]
    lines += [_rdma(d) for d in host.rdma if d.numa_node == numa]
    lines += [_memdev(m) for m in host.cxl_memdevs if m.numa_node == numa]
    shown = (
        {a.pci for a in host.accelerators}
        | {n.pci for n in host.nics}
        | {d.pci for d in host.rdma}
        | {m.pci for m in host.cxl_memdevs}
    )
    lines += [_pci(d) for d in host.pci if d.numa_node == numa and d.kind != "bridge" and d.bdf not in shown]
    return lines


def _numa_label(n: NumaNode) -> str:
    dist = f", distances {n.distances}" if n.distances else ""
    return f"NUMA {n.id} ({n.kind}): {_cpus(n.cpus)}, {fmt_bytes(n.memory_bytes)}{dist}"


def _node_tree(host: HostTopology, cluster: ClusterTopology, torch_reason: str) -> Tree:
    ranks = cluster.ranks_on(host.name)
    head = Text(f"{host.name}", style="bold")
    head.append(f"  node {host.node_id}" + (f", ranks {ranks}" if ranks else ""), style="dim")
    t = Tree(head)
    cpu = _add(
        t,
        f"CPU: {host.cpu_model or 'model unknown'}: {len(host.sockets)} socket(s), {host.core_count} "
        f"cores, {host.cpu_count} threads",
    )
    numa_done: set[int] = set()
    for sock in host.sockets:
        st = _add(cpu, f"socket {sock.id}: {_cpus(sock.cpus)}, {sock.cores} cores")
        for nid in sock.numa_nodes:
            node = next(n for n in host.numa if n.id == nid)
            nt = _add(st, _numa_label(node))
            numa_done.add(nid)
            for line in _device_lines(host, nid):
                _add(nt, line)
    for node in host.numa:
        if node.id not in numa_done:  # CPU-less NUMA nodes (CXL or HBM memory)
            nt = _add(t, _numa_label(node) + _cxl_regions(host, node.id))
            for line in _device_lines(host, node.id):
                _add(nt, line)
    loose = _device_lines(host, None)
    if loose:
        lt = _add(t, "devices without NUMA affinity")
        for line in loose:
            _add(lt, line)
    lo = [n for n in host.nics if n.kind == "loopback"]
    if lo:
        _add(t, ", ".join(f"{n.name} (loopback, mtu {n.mtu})" for n in lo))
    if not host.accelerators:
        reasons = [f"{s.name}: {s.detail}" for s in host.sources if s.name in ("nvml", "amd-kfd") and not s.ok]
        if torch_reason:
            reasons.append(f"torch: {torch_reason}")
        _add(t, Text("no GPU/NPU: " + "; ".join(reasons), style="yellow"))
    for region in host.cxl_regions:
        _add(
            t,
            f"CXL region {region.name}: {region.mode or '?'} {fmt_bytes(region.size_bytes)}, "
            f"{region.interleave_ways}-way over {', '.join(region.targets) or '?'}"
            + (f", NUMA {region.numa_node}" if region.numa_node is not None else ""),
        )
    if host.links:
        lt = _add(t, f"accelerator links ({len(host.links)})")
        for ln in host.links:
            _add(lt, link_text(ln))
    missing = [s for s in host.sources if not s.ok and s.name not in ("nvml", "amd-kfd")]
    if missing:
        mt = _add(t, Text("not found", style="dim"))
        for s in missing:
            _add(mt, Text(f"{s.name}: {s.detail}", style="dim"))
    return t


def _cxl_regions(host: HostTopology, numa: int) -> str:
    names = [r.name for r in host.cxl_regions if r.numa_node == numa]
    return f" <- CXL {', '.join(names)}" if names else ""


def build_tree(cluster: ClusterTopology, torch_reason: str = "") -> Tree:
    """The whole topology as a rich ``Tree``."""
    desc = cluster.descriptor()
    title = Text("topology", style="bold")
    title.append(
        f"  {cluster.num_nodes} node(s), {len(cluster.ranks)} rank(s), type {desc.topology_type.value}, "
        f"recommended backend {desc.backend.value}, fingerprint {cluster.fingerprint()}",
        style="dim",
    )
    root = Tree(title)
    for host in cluster.nodes:
        _add(root, _node_tree(host, cluster, torch_reason))
    links = _add(root, f"links ({len(cluster.links)})")
    for ln in cluster.links:
        _add(links, link_text(ln, cluster))
    if cluster.profile:
        p = cluster.profile
        _add(
            root,
            Text(
                f"profile: {p.get('backend')} backend, {len(p.get('pairs', []))} pair(s), {p.get('elapsed_s', '?')} s",
                style="dim",
            ),
        )
    return root
