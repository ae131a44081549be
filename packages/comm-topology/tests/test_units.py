"""Units of the topology plugin: speed tables, the sysfs reader and recorder, failing soft, NVML snapshots, the
cluster model (names, links between ranks, fingerprint, JSON), the profile cache and the exchange sizes."""

from __future__ import annotations

import ctypes.util
import json
import shutil
from pathlib import Path

import pytest
from topology_paths import FIXTURES

from sagellm_comm_topology.cache import ProfileCache
from sagellm_comm_topology.cluster import ClusterTopology
from sagellm_comm_topology.local import discover_host
from sagellm_comm_topology.model import RankInfo
from sagellm_comm_topology.record import record
from sagellm_comm_topology.sources import SourceMissing, nvml
from sagellm_comm_topology.speeds import nvlink_gbps, parse_gts, parse_rdma_rate, pcie_gbps
from sagellm_comm_topology.sysroot import SysRoot, parse_cpulist


def test_cpulist_and_speed_parsing() -> None:
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpulist("") == []
    assert parse_gts("16.0 GT/s PCIe") == 16.0 and parse_gts("8 GT/s") == 8.0 and parse_gts("Unknown") is None
    # PCIe: 8b/10b up to gen 2, 128b/130b for gen 3-5
    assert pcie_gbps(2.5, 1) == 0.25 and pcie_gbps(5.0, 16) == 8.0
    assert pcie_gbps(8.0, 16) == 15.754 and pcie_gbps(16.0, 16) == 31.508 and pcie_gbps(32.0, 16) == 63.015
    assert pcie_gbps(None, 16) is None and pcie_gbps(16.0, 0) is None
    # NVML's version enum: 4 = NVLink 3.0 (A100), 6 = 4.0 (H100), 7 = 5.0 (B200)
    assert nvlink_gbps(4, 12) == 300.0 and nvlink_gbps(6, 18) == 450.0 and nvlink_gbps(7, 18) == 900.0
    assert nvlink_gbps(8, 18) is None and nvlink_gbps(None, 4) is None
    assert parse_rdma_rate("400 Gb/sec (4X NDR)") == 400.0 and parse_rdma_rate("") is None
    assert nvml.normalize_bus_id("00000000:1B:00.0") == "0000:1b:00.0"


def test_every_source_fails_soft_on_an_empty_tree(tmp_path: Path) -> None:
    host = discover_host(tmp_path, hostname="empty")
    assert host.hostname == "empty" and host.sockets == [] and host.accelerators == []
    assert [s.name for s in host.sources] == ["cpu", "numa", "pci", "net", "rdma", "cxl", "nvml", "amd-kfd"]
    assert not any(s.ok for s in host.sources)
    assert all(s.detail for s in host.sources)


def test_a_broken_file_fails_only_its_source(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "two-socket-4numa", tree, symlinks=True)
    (tree / "sys/devices/system/node/online").write_text("0-x\n")  # not a node list
    host = discover_host(tree)
    numa = host.source("numa")
    assert not numa.ok and "ValueError" in numa.detail
    assert host.numa == [] and host.source("pci").ok and len(host.sockets) == 2


def test_recording_reads_back_to_the_same_topology(tmp_path: Path) -> None:
    root = record(str(tmp_path / "rec"))
    assert root.recorded and not (tmp_path / "rec/etc/machine-id").exists()
    live, replay = discover_host().to_dict(), discover_host(tmp_path / "rec").to_dict()
    for key in ("node_id", "sources"):
        live.pop(key), replay.pop(key)
    assert replay == live
    assert json.loads((tmp_path / "rec/nvml.json").read_text())["source"] == "nvml"


def test_live_nvml_reports_why_it_is_missing() -> None:
    if ctypes.util.find_library("nvidia-ml") is not None:
        snapshot = nvml.capture_snapshot()
        assert isinstance(snapshot["gpus"], list)
        return
    with pytest.raises(SourceMissing, match="NVML library not found"):
        nvml.capture_snapshot()


def _gpu(i: int, peers: list[str], links_per_peer: int) -> dict:
    """A V100 in an NVML snapshot with ``links_per_peer`` NVLink 2.0 links to each GPU in ``peers``."""
    remote = [bdf for bdf in peers for _ in range(links_per_peer)]
    return {
        "index": i,
        "name": "Tesla V100-SXM2-16GB",
        "pci_bus_id": f"00000000:{i + 1:02X}:00.0",
        "memory_total": 16 << 30,
        "pcie_gen": 3,
        "pcie_width": 16,
        "nvlinks": [
            {"link": k, "active": True, "version": 2, "remote_pci_bus_id": bdf, "remote_type": "gpu"}
            for k, bdf in enumerate(remote)
        ],
    }


def test_direct_nvlink_ring_gives_a_mesh_with_pcie_for_the_rest() -> None:
    # 4 GPUs in a ring, 2 links to each neighbour (NVLink 2.0): 0-1, 1-2, 2-3, 3-0; 0-2 and 1-3 go over PCIe
    bdf = [f"0000:{i + 1:02x}:00.0" for i in range(4)]
    snap = {"gpus": [_gpu(i, [bdf[(i + 1) % 4], bdf[(i - 1) % 4]], 2) for i in range(4)]}
    host = discover_host(FIXTURES / "this-vm", hostname="v100", nvml_snapshot=snap)
    kinds = {(ln.a.split("/")[1], ln.b.split("/")[1]): (ln.kind, ln.bandwidth_gbps) for ln in host.links}
    assert kinds[("gpu0", "gpu1")] == ("nvlink", 50.0) and kinds[("gpu0", "gpu3")] == ("nvlink", 50.0)
    assert kinds[("gpu0", "gpu2")] == ("pcie", 15.754) and kinds[("gpu1", "gpu3")] == ("pcie", 15.754)
    cluster = ClusterTopology.single(host)
    assert cluster.topology_type().value == "mesh"
    assert cluster.descriptor().intra_node_bandwidth_gbps == 15.754  # the slowest accelerator pair


def test_duplicate_hostnames_get_unique_node_names_and_links_follow() -> None:
    a = discover_host(FIXTURES / "dgx-h100", node_id="a")
    b = discover_host(FIXTURES / "dgx-h100", node_id="b")
    cluster = ClusterTopology.from_hosts(
        [a, b], [RankInfo(0, "dgx-h100-a", 0, device="cuda:0"), RankInfo(1, "dgx-h100-a#2", 0, device="cuda:0")]
    )
    assert [n.name for n in cluster.nodes] == ["dgx-h100-a", "dgx-h100-a#2"]
    assert {ln.a.split("/")[0] for ln in b.links} == {"dgx-h100-a#2"}
    assert cluster.link_between_ranks(0, 1).kind == "rdma"
    assert cluster.endpoint_of(1) == "dgx-h100-a#2/gpu0"


def test_fingerprint_follows_hardware_not_ranks_or_measurements() -> None:
    host = discover_host(FIXTURES / "two-socket-4numa")
    base = ClusterTopology.single(host).fingerprint()
    ranked = ClusterTopology.from_hosts(
        [discover_host(FIXTURES / "two-socket-4numa")], [RankInfo(0, "epyc-2s"), RankInfo(1, "epyc-2s", 1)]
    )
    ranked.apply_profile({"backend": "x", "pairs": [{"a": 0, "b": 1, "alpha_us": 5.0, "beta_gbps": 9.0}]})
    assert ranked.fingerprint() == base
    assert ranked.find_link("epyc-2s", "epyc-2s").measured["beta_gbps"] == 9.0
    faster = discover_host(FIXTURES / "two-socket-4numa")
    next(n for n in faster.nics if n.name == "eno1").speed_mbps = 10000
    assert ClusterTopology.single(faster).fingerprint() != base


def test_cluster_json_round_trip_and_host_only_files(tmp_path: Path) -> None:
    cluster = ClusterTopology.load(FIXTURES / "cluster-4x8.json")
    cluster.save(tmp_path / "c.json")
    assert ClusterTopology.load(tmp_path / "c.json") == cluster
    host = discover_host(FIXTURES / "cxl-expander")
    (tmp_path / "h.json").write_text(json.dumps(host.to_dict()))
    single = ClusterTopology.load(tmp_path / "h.json")  # one host's JSON is a one-node topology
    assert single.num_nodes == 1 and single.nodes[0].cxl_regions == host.cxl_regions
    (tmp_path / "bad.json").write_text('{"nodes": []}')
    with pytest.raises(ValueError, match="at least one node"):
        ClusterTopology.load(tmp_path / "bad.json")


def test_ascend_npus_are_seen_on_the_pci_bus(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    dev = tree / "sys/devices/pci0000:80/0000:81:00.0"
    dev.mkdir(parents=True)
    for name, value in (("vendor", "0x19e5"), ("device", "0xd802"), ("class", "0x120000"), ("numa_node", "1")):
        (dev / name).write_text(value + "\n")
    (tree / "sys/bus/pci/devices").mkdir(parents=True)
    (tree / "sys/bus/pci/devices/0000:81:00.0").symlink_to("../../../devices/pci0000:80/0000:81:00.0")
    host = discover_host(tree)
    (npu,) = host.accelerators
    assert (npu.kind, npu.key, npu.vendor, npu.name, npu.numa_node) == ("npu", "npu0", "huawei", "Ascend 910B", 1)
    assert "not loaded" in npu.properties["note"]
    (tree / "dev").mkdir()
    (tree / "dev/davinci0").write_text("")
    assert discover_host(tree).accelerators[0].properties["driver_loaded"] is True
    assert ClusterTopology.single(host).descriptor().backend.value == "hccl"


def test_profile_cache_by_fingerprint_and_backend(tmp_path: Path) -> None:
    cache = ProfileCache(tmp_path)
    assert cache.load("abc") is None
    cache.store({"fingerprint": "abc", "backend": "gloo", "created": 1.0, "pairs": []})
    cache.store({"fingerprint": "abc", "backend": "nccl", "created": 2.0, "pairs": []})
    assert cache.load("abc", "gloo")["created"] == 1.0
    assert cache.load("abc")["backend"] == "nccl"  # the most recent
    assert cache.load("abc", "hccl") is None and cache.load("other") is None
    (tmp_path / "abc.json").write_text("{broken")
    assert cache.load("abc") is None  # a corrupt file is a miss, not an error


def test_sysroot_reads_fail_soft(tmp_path: Path) -> None:
    root = SysRoot(tmp_path)
    assert root.read("/nope") is None and root.read_int("/nope") is None and root.listdir("/nope") == []
    (tmp_path / "x").write_text("abc\n")
    assert root.read("/x") == "abc" and root.read_int("/x") is None and root.real("/missing") is None


def test_package_exports_resolve_to_the_named_objects() -> None:
    import sagellm_comm_topology as pkg
    import sagellm_comm_topology.draw  # loaded: a submodule must not shadow an exported name

    for name in pkg.__all__:
        obj = getattr(pkg, name)
        assert callable(obj) or isinstance(obj, str), name
    assert pkg.render.__module__ == "sagellm_comm_topology.draw"
    with pytest.raises(AttributeError):
        pkg.no_such_name  # noqa: B018
