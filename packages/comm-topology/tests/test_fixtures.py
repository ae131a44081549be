"""Discovery over recorded sysfs trees matches the expected JSON, plus the facts a reader checks by eye.

Trees: ``this-vm`` (recorded on the development VM with ``python -m sagellm_comm_topology.record``), and the
synthetic ``two-socket-4numa``, ``dgx-h100`` (8 GPUs on NVSwitch, NVML snapshot), ``cxl-expander``, ``amd-2gpu``
and the 4-node x 8-GPU replay ``cluster-4x8.json`` (built by ``fixtures/make_synthetic.py``).
``UPDATE_EXPECTED=1`` rewrites ``expected/*.json`` (review the diff).
"""

from __future__ import annotations

import json
import os

import pytest
from topology_paths import EXPECTED, FIXTURES

from sagellm_comm_topology.cluster import ClusterTopology
from sagellm_comm_topology.local import discover_host
from sagellm_comm_topology.model import HostTopology, from_dict

TREES = ["this-vm", "two-socket-4numa", "dgx-h100", "cxl-expander", "amd-2gpu"]


def _discover(name: str) -> HostTopology:
    return discover_host(FIXTURES / name, node_id=f"fixture-{name}")


def _check_expected(name: str, data: dict) -> None:
    path = EXPECTED / f"{name}.json"
    if os.environ.get("UPDATE_EXPECTED"):
        EXPECTED.mkdir(exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n")
    expected = json.loads(path.read_text())
    assert data == expected, f"{name}: discovery differs from {path} (UPDATE_EXPECTED=1 rewrites it)"


@pytest.mark.parametrize("name", TREES)
def test_discovery_matches_expected_json(name: str) -> None:
    host = _discover(name)
    data = host.to_dict()
    _check_expected(name, data)
    assert from_dict(HostTopology, json.loads(json.dumps(data))) == host  # JSON round trip


def test_this_vm() -> None:
    host = _discover("this-vm")
    assert host.hostname == "vm"
    assert (len(host.sockets), host.core_count, host.cpu_count) == (1, 2, 2)
    assert [(n.id, n.cpus, n.kind) for n in host.numa] == [(0, [0, 1], "cpu+memory")]
    eth0 = next(n for n in host.nics if n.name == "eth0")
    assert (eth0.kind, eth0.state, eth0.speed_mbps, eth0.pci) == ("ethernet", "up", None, "0000:00:03.0")
    assert "speed -1" in eth0.speed_reason
    assert host.accelerators == []
    assert "NVML library not found" in host.source("nvml").detail
    for name in ("rdma", "cxl", "amd-kfd"):
        assert not host.source(name).ok and host.source(name).detail.startswith("no /sys/")


def test_two_socket_four_numa() -> None:
    host = _discover("two-socket-4numa")
    assert [(s.id, s.cores, len(s.cpus), s.numa_nodes) for s in host.sockets] == [
        (0, 8, 16, [0, 1]),
        (1, 8, 16, [2, 3]),
    ]
    assert [n.distances for n in host.numa][1] == [12, 10, 32, 32]
    assert all(n.memory_bytes == 128 << 30 for n in host.numa)
    nics = {n.name: n for n in host.nics}
    assert (nics["ens1f0np0"].speed_mbps, nics["ens1f0np0"].numa_node) == (100000, 0)
    assert nics["ens1f1np1"].state == "down" and nics["ens1f1np1"].speed_mbps is None
    assert (nics["eno1"].numa_node, nics["docker0"].kind, nics["lo"].kind) == (2, "virtual", "loopback")
    nvme = next(d for d in host.pci if d.driver == "nvme")
    assert (nvme.numa_node, nvme.link_width, round(nvme.bandwidth_gbps, 2)) == (1, 4, 7.88)
    assert [(d.name, d.netdevs, d.ports[0].state) for d in host.rdma] == [
        ("mlx5_0", ["ens1f0np0"], "ACTIVE"),
        ("mlx5_1", ["ens1f1np1"], "DOWN"),
    ]


def test_eight_gpu_nvlink_box() -> None:
    host = _discover("dgx-h100")
    assert [a.key for a in host.accelerators] == [f"gpu{i}" for i in range(8)]
    assert {a.name for a in host.accelerators} == {"NVIDIA H100 80GB HBM3"}
    assert [a.numa_node for a in host.accelerators] == [0] * 4 + [1] * 4
    assert all(round(a.pcie_gbps, 1) == 63.0 for a in host.accelerators)  # PCIe Gen5 x16
    assert len(host.links) == 28  # every pair, through the NVSwitch fabric
    assert {(ln.kind, ln.bandwidth_gbps, ln.detail) for ln in host.links} == {
        ("nvlink", 450.0, "NVSwitch, 18 x NVLink 4.0")
    }
    assert len(host.rdma) == 8 and {p.rate_gbits for d in host.rdma for p in d.ports} == {400.0}
    desc = ClusterTopology.single(host).descriptor()
    assert (desc.gpus_per_node, desc.intra_node_bandwidth_gbps, desc.backend.value) == (8, 450.0, "nccl")


def test_cxl_memory_expander() -> None:
    host = _discover("cxl-expander")
    (mem,) = host.cxl_memdevs
    assert (mem.name, mem.pci, mem.ram_bytes, mem.pmem_bytes, mem.numa_node) == (
        "mem0",
        "0000:35:00.0",
        128 << 30,
        0,
        0,
    )
    (region,) = host.cxl_regions
    assert (region.mode, region.size_bytes, region.interleave_ways, region.targets, region.numa_node) == (
        "ram",
        128 << 30,
        1,
        ["mem0"],
        1,
    )
    assert [(n.id, n.kind, n.cpus) for n in host.numa] == [(0, "cpu+memory", list(range(8))), (1, "cxl-memory", [])]
    assert next(d for d in host.pci if d.bdf == "0000:35:00.0").kind == "cxl"


def test_amd_xgmi_pair() -> None:
    host = _discover("amd-2gpu")
    assert [(a.vendor, a.pci, a.source) for a in host.accelerators] == [
        ("amd", "0000:0c:00.0", "amd-kfd"),
        ("amd", "0000:22:00.0", "amd-kfd"),
    ]
    (link,) = host.links
    assert (link.kind, link.bandwidth_gbps) == ("xgmi", 64.0)


def test_four_node_replay() -> None:
    cluster = ClusterTopology.load(FIXTURES / "cluster-4x8.json")
    assert cluster.to_dict() == json.loads((FIXTURES / "cluster-4x8.json").read_text())  # loads back unchanged
    desc = cluster.descriptor()
    got = desc.model_dump(mode="json")
    _check_expected("cluster-4x8.descriptor", got)
    assert (desc.num_nodes, desc.gpus_per_node, desc.topology_type.value, desc.backend.value) == (
        4,
        8,
        "hybrid",
        "nccl",
    )
    assert (desc.intra_node_bandwidth_gbps, desc.inter_node_bandwidth_gbps) == (450.0, 50.0)  # NVLink / NDR port
    assert {n.name: cluster.ranks_on(n.name) for n in cluster.nodes} == {
        f"dgx-{i:02d}": list(range(8 * i, 8 * i + 8)) for i in range(4)
    }
    assert cluster.link_between_ranks(3, 12).kind == "rdma"
    assert cluster.link_between_ranks(8, 15).kind == "nvlink"
    assert [r.local_rank for r in cluster.ranks[8:16]] == list(range(8))
