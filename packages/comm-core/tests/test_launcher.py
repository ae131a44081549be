"""The local launcher (sagellm_comm.launch): results in rank order, failures and hangs reported precisely."""

from __future__ import annotations

import time

import launcher_tasks
import pytest
from sagellm_protocol.errors import ErrorCode

from sagellm_comm.errors import InvalidArgumentError, RankMismatchError
from sagellm_comm.launch import RankDeadlineError, RankFailedError, RankPool, launch
from sagellm_comm.testing.runner import PoolCache

pytestmark = pytest.mark.multirank

# how long a failing pool may take to report; far below the timeouts the calls are given
QUICK_S = 12.0


def _all_dead(pool: RankPool) -> bool:
    return all(not p.is_alive() for p in pool._procs)


@pytest.fixture
def pool(comm_pools: PoolCache) -> RankPool:
    """A 2-rank pool shared by this module's tests, replaced once a test tore it down (spawning costs)."""
    return comm_pools.get(2)


def test_results_in_rank_order_and_pool_reuse(pool):
    first = pool.run(launcher_tasks.whoami, "a", timeout=30, scale=10)
    assert [r[0] for r in first] == [0, 1]  # rank 1 answers first, the results are still in rank order
    assert [r[2:] for r in first] == [("a", 0, "0", "2"), ("a", 10, "1", "2")]
    assert len({r[1] for r in first}) == 2  # two distinct processes

    # a rank raising while the others finish leaves the pool usable; the original error is the cause
    t0 = time.monotonic()
    with pytest.raises(RankFailedError) as info:
        pool.run(launcher_tasks.raise_comm_error, 1, timeout=30)
    assert time.monotonic() - t0 < QUICK_S
    err = info.value
    assert err.rank == 1
    assert "rank 1" in str(err)
    assert "rank 1 disagrees" in err.remote_traceback
    assert isinstance(err.__cause__, RankMismatchError)
    assert err.__cause__.code is ErrorCode.COMM_RANK_MISMATCH
    assert not pool.broken

    # same processes, next call
    second = pool.run(launcher_tasks.whoami, "b", timeout=30)
    assert [r[1] for r in second] == [r[1] for r in first]
    assert [r[2] for r in second] == ["b", "b"]

    # a result that cannot be pickled back is that rank's failure, and the pool stays usable
    with pytest.raises(RankFailedError) as info:
        pool.run(launcher_tasks.return_unpicklable, 0, timeout=30)
    assert info.value.rank == 0
    assert "pickle" in str(info.value).lower()
    assert not pool.broken

    # a function the ranks cannot import by name is refused before anything is sent
    with pytest.raises(InvalidArgumentError, match="module-level"):
        pool.run(lambda: 1, timeout=5)
    assert pool.run(launcher_tasks.whoami, "c", timeout=30)[0][2] == "c"


def test_invalid_world_size_is_rejected():
    for bad in (0, -1, True, 2.0, 10_000):
        with pytest.raises(InvalidArgumentError) as info:
            RankPool(bad)
        assert info.value.code is ErrorCode.INVALID_ARGUMENT


def test_raising_rank_is_named_and_stuck_ranks_are_stopped_quickly(pool):
    t0 = time.monotonic()
    with pytest.raises(RankFailedError) as info:
        pool.run(launcher_tasks.raise_on, 1, 60.0, timeout=45)
    elapsed = time.monotonic() - t0
    err = info.value
    assert elapsed < QUICK_S, f"took {elapsed:.1f}s to report a failed rank"
    assert err.rank == 1
    assert "rank 1 failed" in str(err)
    assert "ValueError: deliberate failure on rank 1" in str(err)
    # the traceback of the failing rank, down to the function that raised
    assert "Traceback" in err.remote_traceback
    assert "_inner_failure" in err.remote_traceback
    assert "launcher_tasks.py" in err.remote_traceback
    assert isinstance(err.__cause__, ValueError)
    # rank 0 was still waiting: it was stopped and the pool refuses further work
    assert "ranks [0] were still inside it" in str(err)
    assert pool.broken
    assert _all_dead(pool)
    with pytest.raises(RankFailedError, match="torn down"):
        pool.run(launcher_tasks.whoami, "late", timeout=5)


def test_hanging_rank_is_named_with_its_stack(pool):
    # rank 1 hangs, rank 0 returns at once
    t0 = time.monotonic()
    with pytest.raises(RankDeadlineError) as info:
        pool.run(launcher_tasks.hang_on, 1, 120.0, timeout=2.0)
    elapsed = time.monotonic() - t0
    err = info.value
    assert elapsed < QUICK_S, f"took {elapsed:.1f}s to report a deadline of 2s"
    assert err.stuck_ranks == (1,)  # exactly the stuck rank: rank 0 finished
    assert set(err.stacks) == {1}
    assert "stuck_in_this_function_forever" in err.stacks[1]
    assert "stuck_in_this_function_forever" in str(err)
    assert "rank(s) [1]" in str(err)
    assert err.code is ErrorCode.COMM_TIMEOUT
    assert isinstance(err, TimeoutError)
    assert pool.broken
    assert _all_dead(pool)


def test_rank_that_exits_reports_its_exit_code(pool):
    # rank 1 dies with exit code 3 (rank 0 returns normally): that is a failure of rank 1, reported at once and
    # not as a deadline when the timeout passes
    t0 = time.monotonic()
    with pytest.raises((RankFailedError, RankDeadlineError)) as info:
        pool.run(launcher_tasks.exit_on, 1, 3, 0.0, timeout=20)
    err = info.value
    assert not isinstance(err, RankDeadlineError), f"the dead rank was only noticed at the deadline: {err}"
    assert time.monotonic() - t0 < QUICK_S
    assert err.rank == 1
    assert "rank 1" in str(err)
    assert "exit code 3" in str(err)
    # a pool that lost a rank cannot run anything any more: it says so (not a raw BrokenPipeError)
    assert pool.broken
    with pytest.raises(RankFailedError, match="torn down"):
        pool.run(launcher_tasks.whoami, "after-death", timeout=5)


def test_launch_is_one_call_on_fresh_ranks():
    results = launch(launcher_tasks.whoami, 1, "x", timeout=60, scale=5)
    assert [r[:1] + r[2:] for r in results] == [(0, "x", 0, "0", "1")]


def test_launcher_errors_pickle_with_their_fields():
    import pickle

    failed = pickle.loads(pickle.dumps(RankFailedError("boom", rank=3, remote_traceback="tb")))
    assert (failed.rank, failed.remote_traceback, failed.message) == (3, "tb", "boom")
    late = pickle.loads(pickle.dumps(RankDeadlineError("late", stuck_ranks=(1, 2), stacks={1: "s1"})))
    assert (late.stuck_ranks, late.stacks, late.code) == ((1, 2), {1: "s1"}, ErrorCode.COMM_TIMEOUT)
