"""A picture of a topology (matplotlib + networkx): nodes as boxes with their contents, links labelled with speed.

Each node is a box listing its CPU, NUMA nodes, NICs, RDMA and CXL devices and ranks, with its accelerators drawn
as small boxes and the links between them summarised; lines between node boxes are the links between nodes,
labelled with nominal and measured bandwidth and latency. The format follows the file suffix (.png, .svg, .pdf).
Drawing units are inches, so text and boxes keep their proportions whatever the number of nodes.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import networkx as nx
from matplotlib.axes import Axes
from matplotlib.patches import FancyBboxPatch

from sagellm_comm_topology.cluster import ClusterTopology
from sagellm_comm_topology.model import Accelerator, HostTopology, Link
from sagellm_comm_topology.tree import fmt_bytes, fmt_gbps

__all__ = ["render"]

FORMATS = {".png", ".svg", ".pdf"}
BOX_W = 4.6  # inches
FONT = 7.0
LINE_H = FONT * 1.5 / 72  # inches per text line
TITLE_H = 0.42
ACC_W, ACC_H, ACC_GAP, ACC_COLS = 0.98, 0.42, 0.1, 4
PAD = 0.15
WRAP = 74  # monospace characters that fit in a box line
MIN_W = 7.0  # inches: room for the title
KIND_COLOR = {
    "nvlink": "#76b900",
    "xgmi": "#ed1c24",
    "rdma": "#6a3d9a",
    "ethernet": "#1f78b4",
    "network": "#7f7f7f",
    "host": "#444444",
    "pcie": "#ff7f00",
}
VENDOR_COLOR = {"nvidia": "#e3f1c8", "amd": "#f8d7d7", "huawei": "#fde6c8"}


def _link_parts(link: Link) -> list[str]:
    parts = []
    if link.bandwidth_gbps:
        parts.append(f"{fmt_gbps(link.bandwidth_gbps)} nominal")
    if link.measured and link.measured.get("beta_gbps"):
        parts.append(
            f"{fmt_gbps(link.measured['beta_gbps'])} measured, {link.measured.get('alpha_us', 0):.0f} us latency"
        )
    return parts or ["speed unknown"]


def _link_label(link: Link) -> str:
    """The label on a line between two nodes: kind, then one figure per line."""
    return "\n".join([link.kind, *_link_parts(link)])


def _grouped(items: list[tuple[str, str]], limit: int = 3) -> list[str]:
    """[(description, name)] -> "4 x description (a, b, c, ...)" lines, one per distinct description."""
    groups: dict[str, list[str]] = {}
    for desc, name in items:
        groups.setdefault(desc, []).append(name)
    out = []
    for desc, names in groups.items():
        shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
        out.append(f"{len(names)} x {desc} ({shown})" if len(names) > 1 else f"{desc} ({shown})")
    return out


def _acc_links(links: list[Link]) -> list[str]:
    groups: dict[tuple[str, str, float | None], int] = {}
    for ln in links:
        groups[(ln.kind, ln.detail, ln.bandwidth_gbps)] = groups.get((ln.kind, ln.detail, ln.bandwidth_gbps), 0) + 1
    return [
        f"{n} pair(s) {kind} {fmt_gbps(bw)}" + (f": {detail}" if detail else "")
        for (kind, detail, bw), n in groups.items()
    ]


def _node_lines(host: HostTopology, cluster: ClusterTopology) -> list[str]:
    lines = [f"CPU: {len(host.sockets)} socket(s), {host.core_count} cores, {host.cpu_count} threads"]
    lines += [f"  NUMA {n.id} ({n.kind}): {len(n.cpus)} cpus, {fmt_bytes(n.memory_bytes)}" for n in host.numa]
    nics = [
        (f"NIC {n.kind} {n.speed_mbps} Mb/s" if n.speed_mbps else f"NIC {n.kind}, speed unknown", n.name)
        for n in host.nics
        if n.kind != "loopback" and n.state == "up"
    ]
    lines += _grouped(nics)
    rdma = [(f"RDMA {p.rate} {p.link_layer}", d.name) for d in host.rdma for p in d.ports if p.state == "ACTIVE"]
    lines += _grouped(rdma)
    lines += [f"CXL {m.name}: {fmt_bytes(m.ram_bytes)} RAM, {fmt_bytes(m.pmem_bytes)} PMEM" for m in host.cxl_memdevs]
    lines += [
        f"  region {r.name} ({r.mode}): {fmt_bytes(r.size_bytes)} -> NUMA {r.numa_node}" for r in host.cxl_regions
    ]
    if not host.accelerators:
        why = next((s.detail for s in host.sources if s.name == "nvml" and not s.ok), "none found")
        lines.append(f"no GPU: {why}")
    lines += _acc_links(host.links)
    own = cluster.find_link(host.name, host.name)
    if own is not None and (own.measured or len(cluster.ranks_on(host.name)) > 1):
        lines.append("between ranks: " + ", ".join(_link_parts(own)))
    ranks = cluster.ranks_on(host.name)
    if ranks:
        lines.append(f"ranks: {', '.join(map(str, ranks))}")
    return [part for line in lines for part in textwrap.wrap(line, WRAP, subsequent_indent="    ")]


def _acc_rows(host: HostTopology) -> int:
    return math.ceil(len(host.accelerators) / ACC_COLS)


def _height(host: HostTopology, lines: list[str]) -> float:
    rows = _acc_rows(host)
    return TITLE_H + len(lines) * LINE_H + rows * (ACC_H + ACC_GAP) + 2 * PAD


def _positions(cluster: ClusterTopology, tallest: float) -> dict[str, tuple[float, float]]:
    n = len(cluster.nodes)
    if n <= 4:
        cols = 1 if n == 1 else 2
        return {
            node.name: ((i % cols) * (BOX_W + 2.8), -(i // cols) * (tallest + 1.6))
            for i, node in enumerate(cluster.nodes)
        }
    g = nx.cycle_graph([node.name for node in cluster.nodes])
    radius = max(BOX_W + 1.5, tallest + 1.0) * n / (2 * math.pi) + 1.0
    return {k: (float(v[0]) * radius, float(v[1]) * radius) for k, v in nx.circular_layout(g).items()}


def _label_point(
    p: tuple[float, float], q: tuple[float, float], hp: float, hq: float, frac: float
) -> tuple[float, float]:
    """A point on segment p-q at ``frac`` of the part that lies outside both node boxes."""
    dx, dy = q[0] - p[0], q[1] - p[1]

    def exit_t(h: float) -> float:
        tx = (BOX_W / 2) / abs(dx) if dx else math.inf
        ty = (h / 2) / abs(dy) if dy else math.inf
        return min(tx, ty, 0.5)

    t0, t1 = exit_t(hp), 1.0 - exit_t(hq)
    t = t0 + (t1 - t0) * frac
    return p[0] + dx * t, p[1] + dy * t


def _draw_accelerator(ax: Axes, x: float, y: float, acc: Accelerator) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            ACC_W,
            ACC_H,
            boxstyle="round,pad=0.02",
            lw=1.0,
            zorder=5,
            fc=VENDOR_COLOR.get(acc.vendor, "#eeeeee"),
            ec="#555555",
        )
    )
    name = (acc.name or acc.vendor).replace("NVIDIA ", "")[:16]
    mem = f" {fmt_bytes(acc.memory_bytes)}" if acc.memory_bytes else ""
    ax.text(
        x + ACC_W / 2, y + ACC_H / 2, f"{acc.key}{mem}\n{name}", ha="center", va="center", fontsize=FONT - 1.5, zorder=6
    )


def _draw_node(ax: Axes, host: HostTopology, lines: list[str], cx: float, cy: float, h: float) -> None:
    left, top = cx - BOX_W / 2, cy + h / 2
    ax.add_patch(
        FancyBboxPatch(
            (left, cy - h / 2), BOX_W, h, boxstyle="round,pad=0.05", fc="#f4f7fb", ec="#2b5797", lw=1.6, zorder=3
        )
    )
    ax.text(
        cx,
        top - PAD,
        f"{host.name}   node {host.node_id[:12]}",
        ha="center",
        va="top",
        fontsize=FONT + 2,
        fontweight="bold",
        zorder=4,
    )
    y = top - TITLE_H
    for i, acc in enumerate(host.accelerators):
        row, col = divmod(i, ACC_COLS)
        _draw_accelerator(ax, left + PAD + col * (ACC_W + ACC_GAP), y - (row + 1) * (ACC_H + ACC_GAP) + ACC_GAP, acc)
    y -= _acc_rows(host) * (ACC_H + ACC_GAP) + (0.05 if host.accelerators else 0)
    ax.text(
        left + PAD,
        y,
        "\n".join(lines),
        ha="left",
        va="top",
        fontsize=FONT,
        family="monospace",
        zorder=4,
        linespacing=1.5,
    )


def render(cluster: ClusterTopology, path: str | os.PathLike[str]) -> Path:
    """Draw ``cluster`` into ``path``; returns the path."""
    out = Path(path)
    if out.suffix.lower() not in FORMATS:
        raise ValueError(f"cannot render to {out.name!r}: use one of {sorted(FORMATS)}")
    contents = {n.name: _node_lines(n, cluster) for n in cluster.nodes}
    heights = {n.name: _height(n, contents[n.name]) for n in cluster.nodes}
    pos = _positions(cluster, max(heights.values()))
    x0 = min(p[0] for p in pos.values()) - BOX_W / 2 - 0.4
    x1 = max(p[0] for p in pos.values()) + BOX_W / 2 + 0.4
    if x1 - x0 < MIN_W:
        x0, x1 = (x0 + x1 - MIN_W) / 2, (x0 + x1 + MIN_W) / 2
    y0 = min(p[1] - heights[k] / 2 for k, p in pos.items()) - 0.4
    y1 = max(p[1] + heights[k] / 2 for k, p in pos.items()) + 0.8
    fig = plt.figure(figsize=(x1 - x0, y1 - y0))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.axis("off")
    g = nx.Graph()
    for ln in cluster.links:
        if ln.a != ln.b:
            g.add_edge(ln.a, ln.b, label=_link_label(ln), color=KIND_COLOR.get(ln.kind, "#333333"))
    if g.number_of_edges():
        nx.draw_networkx_edges(g, pos, ax=ax, edge_color=[d["color"] for _, _, d in g.edges(data=True)], width=2.5)
        for k, (a, b, data) in enumerate(g.edges(data=True)):
            x, y = _label_point(pos[a], pos[b], heights[a], heights[b], 0.5 if k % 3 == 0 else 0.3 + 0.4 * (k % 2))
            ax.text(
                x,
                y,
                data["label"],
                ha="center",
                va="center",
                fontsize=FONT,
                zorder=10,
                bbox={"boxstyle": "round", "fc": "white", "ec": data["color"]},
            )
    for node in cluster.nodes:
        _draw_node(ax, node, contents[node.name], *pos[node.name], heights[node.name])
    desc = cluster.descriptor()
    ax.text(
        (x0 + x1) / 2,
        y1 - 0.15,
        f"{cluster.num_nodes} node(s), {len(cluster.ranks)} rank(s): "
        f"{desc.topology_type.value}, recommended backend {desc.backend.value}\n"
        f"topology fingerprint {cluster.fingerprint()}",
        ha="center",
        va="top",
        fontsize=FONT + 1,
        linespacing=1.4,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out
