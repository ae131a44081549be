"""Two simulated hosts (network namespaces with their own UTS hostnames, joined by a veth/bridge link shaped with
tc tbf): discovery through the group reports 2 nodes with the right ranks, and the profiler measures the shaped
link at its configured rate and slower than the path inside a node. Also the namespace helper itself.

Skipped with the reason where namespaces cannot be created (not root, iproute2/util-linux missing). Starting rank
processes costs seconds on this machine, so one run of three ranks feeds most tests of this module.
"""

from __future__ import annotations

import subprocess

import pytest
import topology_tasks as tasks

from sagellm_comm.launch import RankFailedError
from sagellm_comm_lab import netns

pytestmark = pytest.mark.multirank

REASON = netns.unavailable_reason()
RATE_MBIT = 200  # tc "mbit" = 10**6 bit/s
RATE_GBPS = RATE_MBIT * 1e6 / 8 / 1e9  # 0.025 GB/s
PLACEMENT = [0, 1, 0]  # ranks 0 and 2 on simhost0, rank 1 on simhost1
BUDGET_S = 3.0


@pytest.fixture(scope="module")
def lab():
    if REASON:
        pytest.skip(f"network namespaces unavailable: {REASON}")
    with netns.NetnsLab(2, rate=f"{RATE_MBIT}mbit") as lab:
        yield lab
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    assert not [n for n in listed if n.startswith(lab.tag)], "namespaces left behind"


@pytest.fixture(scope="module")
def results(lab, tmp_path_factory):
    cache = tmp_path_factory.mktemp("profile-cache")
    out = lab.run_ranks(tasks.gather_and_profile, PLACEMENT, str(cache), BUDGET_S, timeout=180)
    return out, cache


def test_hosts_have_their_own_hostname_interfaces_and_environment(lab, results):
    out, _ = results
    assert [r["hostname"] for r in out] == ["simhost0", "simhost1", "simhost0"]
    assert [r["local_rank"] for r in out] == ["0", "0", "1"]
    assert {r["master"] for r in out} == {lab.hosts[0].address}
    for r in out:  # each host's /sys shows its own interfaces only
        assert r["ifname"] == netns.HOST_IFNAME
        assert r["interfaces"] == sorted(["lo", netns.HOST_IFNAME])
    probe = lab.run(1, ["python3", "-c", f"import socket; socket.create_connection(('{lab.hosts[0].address}', 9), 2)"])
    assert "Connection refused" in probe.stderr  # routed to simhost0, which has nothing listening on port 9


def test_two_nodes_with_their_ranks(results):
    out, _ = results
    assert all(r["cluster"]["ranks"] == out[0]["cluster"]["ranks"] for r in out)  # every rank has the same map
    assert all(r["num_nodes"] == 2 for r in out)
    cluster = out[0]["cluster"]
    nodes = {n["name"]: n for n in cluster["nodes"]}
    assert sorted(nodes) == ["simhost0", "simhost1"]
    assert len({n["node_id"] for n in nodes.values()}) == 2
    placement = {r["rank"]: (r["node"], r["local_rank"]) for r in cluster["ranks"]}
    assert placement == {0: ("simhost0", 0), 1: ("simhost1", 0), 2: ("simhost0", 1)}
    for n in nodes.values():  # each simulated host discovered its own veth
        nic = next(x for x in n["nics"] if x["name"] == netns.HOST_IFNAME)
        assert nic["state"] == "up" and nic["kind"] == "virtual"
    desc = out[0]["descriptor"]
    assert desc["num_nodes"] == 2 and desc["topology_type"] == "hybrid"
    assert desc["metadata"]["nodes"] == {"simhost0": [0, 2], "simhost1": [1]}


def test_shaped_link_measured_at_its_rate_and_slower_than_inside_a_node(results):
    out, cache = results
    first = out[0]
    pairs = {p["scope"]: p for p in first["profile"]["pairs"]}
    assert set(pairs) == {"intra", "inter"}
    assert (pairs["intra"]["a"], pairs["intra"]["b"]) == (0, 2)
    assert (pairs["inter"]["a"], pairs["inter"]["b"]) == (0, 1)
    inter, intra = pairs["inter"]["beta_gbps"], pairs["intra"]["beta_gbps"]
    print(
        f"\nshaped link: measured {inter * 1e3:.2f} MB/s vs configured {RATE_GBPS * 1e3:.2f} MB/s "
        f"({inter / RATE_GBPS:.0%}), latency {pairs['inter']['alpha_us']:.0f} us; inside a node "
        f"{intra * 1e3:.0f} MB/s, {pairs['intra']['alpha_us']:.0f} us; backend {first['backend']}; "
        f"profile took {first['profile']['elapsed_s']} s"
    )
    assert abs(inter - RATE_GBPS) <= 0.25 * RATE_GBPS, f"shaped link measured at {inter} GB/s, set to {RATE_GBPS}"
    assert intra > 2 * inter
    # the measurement sits on the link between the nodes and is the descriptor's inter-node figure
    link = next(x for x in first["cluster"]["links"] if {x["a"], x["b"]} == {"simhost0", "simhost1"})
    assert link["measured"]["beta_gbps"] == inter
    assert first["descriptor"]["inter_node_bandwidth_gbps"] == pytest.approx(inter)
    # the second call found the profile in the cache instead of measuring again
    assert [r["reused"] for r in out] == [[False, True]] * 3
    assert out[1]["second_created"] == first["profile"]["created"]
    assert len(list(cache.glob("*.json"))) == 1


def test_a_failing_rank_is_reported_with_its_traceback(lab):
    with pytest.raises(RankFailedError) as info:
        lab.run_ranks(tasks.fail_on, [1], 0, timeout=60)
    assert info.value.rank == 0
    assert "deliberate failure on rank 0" in info.value.remote_traceback
    assert "topology_tasks.py" in info.value.remote_traceback


def test_lab_refuses_bad_arguments():
    from sagellm_comm.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        netns.NetnsLab(0)
    with pytest.raises(InvalidArgumentError):
        netns.NetnsLab(2, hostnames=["only-one"])


def test_stale_namespaces_of_dead_processes_are_removed():
    if REASON:
        pytest.skip(f"network namespaces unavailable: {REASON}")
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{netns.PREFIX}-{dead.pid}-0-stale"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in netns.cleanup_stale()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
