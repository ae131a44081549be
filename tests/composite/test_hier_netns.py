"""``get_comm_backend("auto")`` across simulated hosts (netns lab: each namespace its own hostname, the launcher's
WORLD_SIZE != LOCAL_WORLD_SIZE): it is the hier composite, says why, decides the same on every rank, and its
two-level all_reduce, all_gather, reduce_scatter and broadcast are right on 2 nodes x 2 ranks and 3 nodes x 2 ranks.
Skipped with the reason where namespaces cannot be created."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import hier_tasks
import pytest

from sagellm_comm_lab import netns

pytestmark = pytest.mark.multirank

REASON = netns.unavailable_reason()
# shm-like inside a node, 1 Gbit/s between nodes: pinned so that the decisions below do not depend on this VM's speed
LINKS = '{"intra": [2e-5, 2e-10], "inter": [1e-4, 8e-9], "gamma": 3e-10}'


@pytest.mark.skipif(bool(REASON), reason=f"network namespaces unavailable: {REASON}")
@pytest.mark.parametrize(
    "placement, env",
    [
        ([0, 0, 1, 1], {"SAGELLM_COMM_HIER_LINKS": LINKS}),
        ([0, 0, 1, 1, 2, 2], {}),  # links measured at init: whatever they are, every rank must decide the same
    ],
    ids=["2x2-pinned-links", "3x2-measured-links"],
)
def test_auto_is_hier_across_hosts(placement: list[int], env: dict[str, str], tmp_path) -> None:
    with netns.NetnsLab(max(placement) + 1) as lab:
        results = lab.run_ranks(
            hier_tasks.auto_across_hosts,
            placement,
            1001,
            timeout=300,
            env={"OMP_NUM_THREADS": "1", "SAGELLM_COMM_TOPOLOGY_CACHE": str(tmp_path), **env},
        )
    nodes = [[r for r, h in enumerate(placement) if h == host] for host in range(max(placement) + 1)]
    for rank, r in enumerate(results):
        assert r["name"] == "hier", (rank, r)
        assert "several hosts" in r["because"], r["because"]
        assert r["nodes"] == nodes and r["checks"] >= 7
    assert all(r["decisions"] == results[0]["decisions"] for r in results), "ranks decided differently"
    assert len({r["digest"] for r in results}) == 1, "ranks hold different bits"
    if env:
        by_size = {d[0]: d[1:] for d in results[0]["decisions"]}
        for size in (16 << 20, 64 << 20):
            algo, rule, reason = by_size[size]
            assert (algo, rule) == ("hierarchical", "cost-model"), by_size[size]
            assert reason.startswith("hierarchical: 2 node(s) x 2 rank(s)") and "vs flat" in reason


@pytest.mark.skipif(bool(REASON), reason=f"network namespaces unavailable: {REASON}")
def test_benchmark_records_say_what_hier_ran(tmp_path) -> None:
    """``--backend auto --algo auto`` across hosts: the unit runs hier's native, and each record names the path hier
    took, its rule and its reason."""
    with netns.NetnsLab(2) as lab:
        results = lab.run_ranks(
            hier_tasks.bench_auto,
            [0, 0, 1, 1],
            ["4K", "16M"],
            timeout=300,
            env={"OMP_NUM_THREADS": "1", "SAGELLM_COMM_HIER_LINKS": LINKS},
        )
    rows = {r["bytes"]: r for r in results[0]}
    assert rows[16 << 20]["algo_id"] == "native/hierarchical"
    for r in rows.values():
        assert r["backend_kind"] == "hier" and r["selection_rule_id"] == "hier:cost-model" and not r["wrong"]
        assert "predicted" in r["selection_reason"] and "SAGELLM_COMM_HIER_LINKS" in r["selection_reason"]


@pytest.mark.skipif(bool(REASON), reason=f"network namespaces unavailable: {REASON}")
def test_hierarchical_benchmark_smoke(tmp_path) -> None:
    """benchmark.hierarchical end to end at one small size: every contender runs, is checked, and is tabled."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark.hierarchical",
            "--sizes",
            "4K",
            "--blocks",
            "1",
            "--small-blocks",
            "1",
            "--small-calls",
            "1",
            "--algos",
            "native",
            "ring",
            "--output-dir",
            str(tmp_path),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [record] = [json.loads(p.read_text()) for p in tmp_path.glob("hierarchical_*.json")]
    [row] = record["rows"]
    assert set(row["ms"]) == {"auto", "hier hierarchical", "hier flat", "gloo native", "gloo ring", "raw gloo"}
    assert not any(row["wrong"].values()) and row["decision"][0] in ("hierarchical", "flat")
    assert "| 4 KiB |" in proc.stdout
