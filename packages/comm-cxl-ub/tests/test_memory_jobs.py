"""Multi-rank behaviour of the memory-semantic backends that the conformance suite does not cover: crashes leave
nothing behind, independent jobs on one host never share a region, cxl over a device-like file, auto selection.
The tests whose outcome depends on the engine's waits and tags run on both engine paths (``engine``): the native
one, the default where it was built, and the Python fallback."""

from __future__ import annotations

import json
import os
import threading

import memory_tasks
import pytest
from sagellm_protocol.errors import ErrorCode

from sagellm_comm.launch import RankFailedError, RankPool
from sagellm_comm.testing import tasks

pytestmark = pytest.mark.multirank


@pytest.fixture(autouse=True)
def _needs_shm():
    from sagellm_comm import is_comm_backend_available

    if not is_comm_backend_available("shm"):
        pytest.skip("shm is not available here")


@pytest.fixture(params=["native", "python"])
def engine(request, monkeypatch):
    """The engine path the ranks run (SAGELLM_COMM_SHM_ENGINE, inherited by the rank processes)."""
    from sagellm_comm_cxl_ub import native

    if request.param == "native" and not native.NATIVE_AVAILABLE:
        pytest.skip(f"the native engine is not available here: {native.NATIVE_REASON}")
    monkeypatch.setenv("SAGELLM_COMM_SHM_ENGINE", request.param)
    return request.param


def test_killing_a_rank_mid_collective_fails_the_others_fast_and_leaves_no_segment(tmp_path, engine):
    before = memory_tasks.shm_names()
    report = str(tmp_path / "report")
    with RankPool(2) as pool, pytest.raises(RankFailedError) as info:
        pool.run(memory_tasks.crash_mid_collective, report, timeout=120)
    assert "rank 1" in str(info.value)
    with open(f"{report}.0") as f:
        seen = json.load(f)
    assert seen["error"] == ErrorCode.COMM_COLLECTIVE_FAILED.value, seen
    assert "rank 1" in seen["message"] and "exited" in seen["message"] and not seen["retryable"]
    assert seen["seconds"] < 60  # found by the liveness check, not by the 60 s timeout
    assert memory_tasks.shm_names() == before


def test_a_rank_that_never_maps_the_region_times_out_by_name_and_leaves_no_segment():
    before = memory_tasks.shm_names()
    with RankPool(2) as pool:
        r0, _ = pool.run(memory_tasks.init_alone, 2.0, timeout=60)
    assert r0["error"] == ErrorCode.COMM_TIMEOUT.value and "rank 1 did not" in r0["message"], r0
    assert memory_tasks.shm_names() == before


def test_region_names_are_gone_once_every_rank_mapped_them(tmp_path):
    with RankPool(3, env={"SAGELLM_COMM_SHM_DIR": str(tmp_path)}) as pool:
        results = pool.run(memory_tasks.region_files_during_init, str(tmp_path), timeout=60)
    for r in results:
        assert r["after_init"] == [] and r["mapped_bytes"] > 0
    assert os.listdir(tmp_path) == []


def test_two_jobs_on_one_host_run_at_once_and_both_get_right_answers(engine):
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def job(j: int, pool: RankPool) -> None:
        try:
            results[j] = pool.run(memory_tasks.job_traffic, j, 150, timeout=180)
        except BaseException as exc:  # reported below
            errors.append(exc)

    with RankPool(2) as a, RankPool(2) as b:
        threads = [threading.Thread(target=job, args=(j, p)) for j, p in ((1, a), (2, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
    assert not errors, errors
    assert [r["wrong"] for j in (1, 2) for r in results[j]] == [0, 0, 0, 0]
    assert all(r["engines"] == [engine, engine] for j in (1, 2) for r in results[j]), results


def test_cxl_over_a_device_like_file_windows_per_group(tmp_path):
    """A pre-sized file stands in for a DAX device: groups get windows of it, nothing is unlinked."""
    dev = tmp_path / "dax0.0"
    with open(dev, "wb") as f:
        f.truncate(64 << 20)
    with RankPool(3, env={"SAGELLM_COMM_CXL_PATH": str(dev)}) as pool:
        # each task checks every rank's result against a local reference and raises on a mismatch
        assert pool.run(tasks.all_reduce, "cxl", "float32", "sum", [0, 1, 1021, 300_000]) == [4, 4, 4]
        pool.run(tasks.broadcast, "cxl", "bfloat16")
        assert pool.run(tasks.p2p_all_pairs, "cxl", "int64") == [0, 1, 2]
        members = [r["members"] for r in pool.run(tasks.sub_groups, "cxl")]
        windows = pool.run(memory_tasks.device_windows, "cxl")
    assert members == [[0, 2], [1], [0, 2]]
    # rank 1 is not in the evens group, yet must place its window where ranks 0 and 2 do, or the odds group's
    # window would overlap it
    assert windows[0] == windows[1] == windows[2] and len(windows[0]) == 3
    assert dev.exists() and dev.stat().st_size == 64 << 20


def test_auto_picks_shm_for_ranks_of_one_host_and_not_across_hosts():
    with RankPool(2) as pool:
        assert pool.run(memory_tasks.auto_name) == ["shm", "shm"]
    # torchrun on 2 hosts x 1 rank: LOCAL_WORLD_SIZE < WORLD_SIZE, shm steps aside
    with RankPool(2, env={"LOCAL_WORLD_SIZE": "1"}) as pool:
        names = pool.run(memory_tasks.auto_name)
    assert "shm" not in names


def test_p2p_streams_in_order_and_exchanges_large_messages_both_ways(comm_pools):
    results = comm_pools.get(2).run(memory_tasks.p2p_stress, 120, timeout=180)
    assert [r["wrong"] for r in results] == [0, 0]


def test_p2p_matches_tags_out_of_order_and_names_size_mismatches(comm_pools):
    _, r1 = comm_pools.get(2).run(memory_tasks.p2p_tags_and_sizes, timeout=120)
    assert r1["got"] == {7: [7.0], 5: [5.0], 6: [6.0]}
    code, message = r1["mismatch"]
    assert code == ErrorCode.COMM_P2P_FAILED.value and "40 bytes" in message and "20 bytes" in message
    assert r1["after"] == [9.0] * 4


def test_destroy_abandons_a_pending_async_op_promptly_and_says_so(engine):
    before = memory_tasks.shm_names()
    with RankPool(2) as pool:
        r0, _ = pool.run(memory_tasks.destroy_with_an_async_op_pending, 3.0, timeout=60)
    assert r0["completed_early"] is False  # rank 1 never joined
    assert r0["destroy_s"] < 30.0, r0  # the wait was aborted, not left to the 60 s group timeout
    assert r0["error"]["code"] == ErrorCode.COMM_COLLECTIVE_FAILED.value and "destroyed" in r0["error"]["message"]
    assert memory_tasks.shm_names() == before


def test_mismatched_collectives_raise_on_every_rank_and_the_group_stays_usable(engine):
    """Different sizes, ops, dtypes, roots or reduce ops across ranks: COMM_RANK_MISMATCH naming the field on every
    rank (before the step tags the shared memory engine returned wrong data and no error)."""
    with RankPool(2) as pool:
        results = pool.run(memory_tasks.mismatched_collectives, "shm", timeout=120)
    fields = ["numel", "op", "dtype", "root", "reduce op", "async numel"]
    assert results == [[f"{f}: mismatch" for f in fields]] * 2, results
