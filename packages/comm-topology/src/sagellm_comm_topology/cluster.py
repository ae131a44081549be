"""``ClusterTopology``: every node of a job, its ranks, and the links between them; the protocol descriptor.

Built from the hosts' own views (``from_hosts``; ``gather.gather_cluster`` all-gathers them through a backend),
or loaded from JSON (``load``) to pin or replay a topology. Node-level links are estimated from what the hosts
report (NIC speed, RDMA rate); the profiler adds measured latency and bandwidth (``apply_profile``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from sagellm_protocol import CommBackendType, CommTopologyDescriptor, TopologyType

from sagellm_comm_topology.model import (
    SCHEMA,
    HostTopology,
    Link,
    Nic,
    RankInfo,
    dump_json,
    from_dict,
)
from sagellm_comm_topology.speeds import net_gbps

__all__ = ["ClusterTopology", "load_topology"]

DIRECT_KINDS = frozenset({"nvlink", "xgmi"})


def _best_nic(host: HostTopology) -> Nic | None:
    """The fastest NIC that is up: a physical one if any, else a virtual one (containers, namespaces)."""
    up = [n for n in host.nics if n.state == "up" and n.kind != "loopback"]
    physical = [n for n in up if n.kind in ("ethernet", "infiniband")]
    pool = physical or [n for n in up if n.kind == "virtual"]
    if not pool:
        return None
    return max(pool, key=lambda n: (n.speed_mbps or 0, n.name))


def _best_rdma(host: HostTopology) -> tuple[str, float, str, int] | None:
    """(device, Gb/s, link layer, how many active ports run at that rate) of the fastest active RDMA port."""
    ports = [
        (d.name, p.rate_gbits or 0.0, p.link_layer)
        for d in host.rdma
        for p in d.ports
        if p.state == "ACTIVE" and p.rate_gbits
    ]
    if not ports:
        return None
    best = max(ports, key=lambda p: p[1])
    return (*best, sum(1 for p in ports if p[1] == best[1]))


def _rdma_text(r: tuple[str, float, str, int]) -> str:
    return f"{r[3]} x {r[1]:g} Gb/s {r[2]} ({r[0]}{', ...' if r[3] > 1 else ''})"


def _nic_text(nic: Nic | None) -> str:
    if nic is None:
        return "no interface up"
    speed = f"{nic.speed_mbps} Mb/s" if nic.speed_mbps else f"speed unknown: {nic.speed_reason or 'not reported'}"
    return f"{nic.name} ({nic.kind}, {speed})"


def _network_link(a: HostTopology, b: HostTopology) -> Link:
    ra, rb = _best_rdma(a), _best_rdma(b)
    if ra and rb:
        gbits = min(ra[1], rb[1])
        return Link(
            a=a.name,
            b=b.name,
            kind="rdma",
            bandwidth_gbps=gbits / 8.0,
            source="sysfs",
            detail=f"per port; {_rdma_text(ra)} <-> {_rdma_text(rb)}",
        )
    na, nb = _best_nic(a), _best_nic(b)
    speeds = [net_gbps(n.speed_mbps) if n else None for n in (na, nb)]
    known = [s for s in speeds if s]
    bw = min(known) if len(known) == 2 else None
    return Link(
        a=a.name,
        b=b.name,
        kind="ethernet" if na and nb else "network",
        bandwidth_gbps=bw,
        source="sysfs" if bw else "unknown",
        detail=f"{_nic_text(na)} <-> {_nic_text(nb)}",
    )


def _rename(host: HostTopology, name: str) -> None:
    """Give a host its unique name in the cluster; its links' endpoints (``old/gpu0``) follow."""
    old, host.name = host.name, name
    for ln in host.links:
        ln.a = name + ln.a[len(old) :] if ln.a == old or ln.a.startswith(old + "/") else ln.a
        ln.b = name + ln.b[len(old) :] if ln.b == old or ln.b.startswith(old + "/") else ln.b


def _host_link(host: HostTopology) -> Link:
    return Link(
        a=host.name,
        b=host.name,
        kind="host",
        source="unknown",
        detail="between ranks of this node through host memory (shared memory or loopback)",
    )


@dataclass
class ClusterTopology:
    nodes: list[HostTopology]
    ranks: list[RankInfo] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)  # node level: a == b is a node's own host path
    backend: str | None = None
    profile: dict[str, Any] | None = None
    schema: str = SCHEMA

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_hosts(
        cls, hosts: list[HostTopology], ranks: list[RankInfo] | None = None, backend: str | None = None
    ) -> ClusterTopology:
        """Nodes (unique names), node-level links, and ranks with local ranks counted per node."""
        names: dict[str, int] = {}
        for h in hosts:
            k = names.get(h.hostname, 0)
            names[h.hostname] = k + 1
            _rename(h, h.hostname if k == 0 else f"{h.hostname}#{k + 1}")
        links = [_host_link(h) for h in hosts]
        for i, a in enumerate(hosts):
            links.extend(_network_link(a, b) for b in hosts[i + 1 :])
        return cls(nodes=list(hosts), ranks=sorted(ranks or [], key=lambda r: r.rank), links=links, backend=backend)

    @classmethod
    def single(cls, host: HostTopology) -> ClusterTopology:
        return cls.from_hosts([host])

    # -- queries -----------------------------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def node(self, name: str) -> HostTopology:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}; nodes: {[n.name for n in self.nodes]}")

    def ranks_on(self, name: str) -> list[int]:
        return [r.rank for r in self.ranks if r.node == name]

    def rank(self, rank: int) -> RankInfo:
        for r in self.ranks:
            if r.rank == rank:
                return r
        raise KeyError(f"no rank {rank}; ranks: {[r.rank for r in self.ranks]}")

    def all_links(self) -> list[Link]:
        return [ln for n in self.nodes for ln in n.links] + self.links

    def find_link(self, a: str, b: str) -> Link | None:
        ends = (a, b) if a <= b else (b, a)
        return next((ln for ln in self.all_links() if ln.endpoints == ends), None)

    def endpoint_of(self, rank: int) -> str:
        """The endpoint a rank talks from: its accelerator (``node/gpu0``) or its node."""
        info = self.rank(rank)
        kind, _, index = info.device.partition(":")
        if kind in ("cuda", "npu") and index:
            return f"{info.node}/{'npu' if kind == 'npu' else 'gpu'}{index}"
        return info.node

    def link_between_ranks(self, a: int, b: int) -> Link | None:
        ra, rb = self.rank(a), self.rank(b)
        if ra.node != rb.node:
            return self.find_link(ra.node, rb.node)
        ea, eb = self.endpoint_of(a), self.endpoint_of(b)
        if ea != eb and "/" in ea and "/" in eb:
            link = self.find_link(ea, eb)
            if link is not None:
                return link
        return self.find_link(ra.node, ra.node)

    # -- summary numbers ---------------------------------------------------------------------------------------
    @staticmethod
    def effective_gbps(link: Link) -> float | None:
        if link.measured and link.measured.get("beta_gbps"):
            return float(link.measured["beta_gbps"])
        return link.bandwidth_gbps

    def intra_node_links(self) -> list[Link]:
        accel = [ln for n in self.nodes for ln in n.links]
        return accel if accel else [ln for ln in self.links if ln.a == ln.b]

    def inter_node_links(self) -> list[Link]:
        return [ln for ln in self.links if ln.a != ln.b]

    def _min_gbps(self, links: list[Link]) -> float:
        known = [g for g in (self.effective_gbps(ln) for ln in links) if g]
        return round(min(known), 6) if known else 0.0

    @property
    def gpus_per_node(self) -> int:
        return max((len(n.accelerators) for n in self.nodes), default=0)

    def topology_type(self) -> TopologyType:
        if self.num_nodes > 1:
            return TopologyType.HYBRID
        kinds = {ln.kind for n in self.nodes for ln in n.links}
        if kinds & DIRECT_KINDS and "pcie" in kinds:
            return TopologyType.MESH  # some accelerator pairs are directly linked, others are not
        return TopologyType.FULLY_CONNECTED

    def recommended_backend(self) -> CommBackendType:
        kinds = {a.kind for n in self.nodes for a in n.accelerators}
        if "npu" in kinds:
            return CommBackendType.HCCL
        if "cuda" in kinds:
            return CommBackendType.NCCL
        return CommBackendType.GLOO

    def descriptor(self, backend: CommBackendType | str | None = None) -> CommTopologyDescriptor:
        """The protocol's ``CommTopologyDescriptor`` (bandwidths in GB/s; 0.0 where unknown and not profiled)."""
        if backend is None:
            btype = self.recommended_backend()
        else:
            try:
                btype = CommBackendType(backend)
            except ValueError:
                btype = CommBackendType.CUSTOM
        return CommTopologyDescriptor(
            topology_type=self.topology_type(),
            num_nodes=max(self.num_nodes, 1),
            gpus_per_node=max(self.gpus_per_node, 1),
            intra_node_bandwidth_gbps=self._min_gbps(self.intra_node_links()),
            inter_node_bandwidth_gbps=self._min_gbps(self.inter_node_links()),
            backend=btype,
            metadata={
                "fingerprint": self.fingerprint(),
                "nodes": {n.name: self.ranks_on(n.name) for n in self.nodes},
                "profiled": self.profile is not None,
                "source": "sagellm_comm_topology",
            },
        )

    # -- identity ----------------------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A stable id of the hardware (nodes, CPUs, NUMA, accelerators, NICs, RDMA ports), independent of ranks,
        load and time: the profiler's cache key."""
        sig = []
        for n in sorted(self.nodes, key=lambda n: n.node_id):
            sig.append(
                {
                    "node": n.node_id,
                    "host": n.hostname,
                    "cpus": n.cpu_count,
                    "numa": [(x.id, len(x.cpus), x.kind) for x in n.numa],
                    "acc": [(a.vendor, a.name, a.pci) for a in n.accelerators],
                    "nics": [
                        (x.name, x.kind, x.speed_mbps) for x in n.nics if x.state == "up" and x.kind != "loopback"
                    ],
                    "rdma": [(d.name, [(p.port, p.rate_gbits) for p in d.ports]) for d in n.rdma],
                }
            )
        blob = json.dumps(sig, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    # -- profile -----------------------------------------------------------------------------------------------
    def apply_profile(self, profile: dict[str, Any]) -> None:
        """Attach measured latency/bandwidth of each profiled rank pair to the link between them."""
        self.profile = profile
        for pair in profile.get("pairs", []):
            try:
                link = self.link_between_ranks(int(pair["a"]), int(pair["b"]))
            except KeyError:
                link = self._link_by_nodes(pair)
            if link is None:
                continue
            link.latency_us = pair.get("alpha_us")
            link.measured = {
                k: pair.get(k)
                for k in ("alpha_us", "beta_gbps", "bulk_bytes", "samples_small", "samples_bulk", "a", "b")
            }
            link.measured["backend"] = profile.get("backend")
            if link.source == "unknown":
                link.source = "profiled"

    def _link_by_nodes(self, pair: dict[str, Any]) -> Link | None:
        a, b = pair.get("a_node"), pair.get("b_node")
        return self.find_link(a, b) if a and b else None

    # -- serialisation -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterTopology:
        if "nodes" not in data and "hostname" in data:
            return cls.single(from_dict(HostTopology, data))
        topo = from_dict(cls, data)
        if not topo.nodes:
            raise ValueError("a topology needs at least one node")
        return topo

    def save(self, path: str | os.PathLike[str]) -> None:
        dump_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ClusterTopology:
        with open(path) as f:
            return cls.from_dict(json.load(f))


def load_topology(path: str | os.PathLike[str]) -> ClusterTopology:
    """A pinned/replayed topology from JSON: a whole cluster, or one host's ``HostTopology``."""
    return ClusterTopology.load(path)
