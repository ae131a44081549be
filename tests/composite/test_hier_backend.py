"""The hier composite on one host, nodes simulated (rank r on node r // 2): sub-groups across and inside nodes,
point to point inside and between nodes, decisions identical on every rank; auto's choice; option errors."""

from __future__ import annotations

import hier_tasks
import pytest

from sagellm_comm.errors import CommError, ErrorCode
from sagellm_comm.launch import RankPool
from sagellm_comm.registry import get_comm_backend, select_backend

pytestmark = pytest.mark.multirank

LINKS = '{"intra": [2e-5, 2e-10], "inter": [1e-4, 8e-9], "gamma": 3e-10}'  # shm-like inside, 1 Gbit/s between


@pytest.mark.parametrize("ws", [4, 5])
def test_groups_p2p_and_identical_decisions(ws: int) -> None:
    env = {"SAGELLM_COMM_HIER_RANKS_PER_NODE": "2", "SAGELLM_COMM_HIER_LINKS": LINKS}
    with RankPool(ws, env=env) as pool:
        results = pool.run(hier_tasks.layouts_and_groups, "hier", timeout=180)
    want_nodes = [list(range(i, min(i + 2, ws))) for i in range(0, ws, 2)]
    for r, res in enumerate(results):
        assert res["nodes"] == want_nodes
        assert res["checks"] >= 7
        if r in (0, 1, ws - 1):
            assert res["across"] in ("hierarchical", "flat")
        if r in (ws - 2, ws - 1) and (ws - 2) // 2 == (ws - 1) // 2:
            assert res["inside"] == "intra"
    assert all(res["decisions"] == results[0]["decisions"] for res in results), "ranks decided differently"
    by = {(op, s): algo for op, s, algo, _ in results[0]["decisions"]}
    if ws == 4:  # 2 x 2 at 1 Gbit/s between nodes: large all_reduce goes two-level, and the reason says why
        assert by[("all_reduce", 16 << 20)] == "hierarchical"
        reason = next(why for op, s, _, why in results[0]["decisions"] if (op, s) == ("all_reduce", 16 << 20))
        assert "2 node(s) x 2 rank(s)" in reason and "predicted" in reason and "vs flat" in reason
    else:  # 2 + 2 + 1: the uneven layout has no two-level all_gather
        assert by[("all_gather", 16 << 20)] == "flat"


def test_auto_picks_hier_only_when_the_launcher_says_several_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    name, why = select_backend()
    assert name == "hier" and "several hosts" in why
    assert get_comm_backend("auto").selected_because == why
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    name, why = select_backend()
    assert name == "shm" and "hier: not for this job" in why
    monkeypatch.delenv("WORLD_SIZE")
    assert select_backend()[0] == "shm"


def test_transports_come_from_the_registry() -> None:
    from sagellm_comm.composite.transports import choose_transports

    t = choose_transports("cpu")
    assert (t.intra.name, t.inter.name) == ("shm", "gloo")  # by scope and priority, not by name
    assert t.intra.scope == "host" and t.inter.scope == "cluster"


@pytest.mark.parametrize(
    "options, words",
    [
        ({"algo": "fastest"}, "choose from auto, hierarchical, flat"),
        ({"ranks_per_node": 0}, "ranks_per_node"),
        ({"node_ids": "a,b"}, "2 entries for a world of 1"),
        ({"links": '{"intra": [1]}'}, "link parameters must be"),
    ],
)
def test_bad_options_say_what_is_wrong(options: dict, words: str) -> None:
    comm = get_comm_backend("hier", **options)
    with pytest.raises(CommError) as err:
        comm.init_process_group(world_size=1, rank=0)
    assert err.value.code == ErrorCode.INVALID_ARGUMENT and words in err.value.message
    assert not comm.is_initialized


def test_intra_link_measured_on_the_first_node_with_two_ranks(tmp_path) -> None:
    with RankPool(3, env={"SAGELLM_COMM_TOPOLOGY_CACHE": str(tmp_path)}) as pool:
        results = pool.run(hier_tasks.lone_first_node, "a,b,b", timeout=120)
    assert all(r == results[0] for r in results)
    assert results[0]["pairs"] == [(1, 2, "intra"), (0, 1, "inter")]
    assert results[0]["intra_beta"] > 0
