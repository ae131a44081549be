"""Every algorithm x every op it implements is right at world sizes 2, 3 and 4 on Gloo, through the benchmark's
own ``--check`` machinery (one checked iteration per unit), plus every reduce op, other roots and
non-contiguous tensors for the composite algorithms."""

from __future__ import annotations

import algo_tasks
import pytest

from sagellm_comm.algorithms import algorithm_names, get_algorithm
from sagellm_comm.benchmark import UnitSpec, merge_rank_results, plan_size
from sagellm_comm.benchmark.rank import rank_measure, rank_setup, rank_teardown

pytestmark = [pytest.mark.multirank, pytest.mark.timeout(240)]

# element counts: 1 (fewer elements than ranks: empty ring chunks), 7 (odd), 1000
COUNTS = (1, 7, 1000)


@pytest.fixture(scope="module", params=[2, 3, 4], ids=lambda n: f"ws{n}")
def gloo_ranks(request: pytest.FixtureRequest, comm_pools):
    pool = comm_pools.get(request.param)
    pool.run(rank_setup, "gloo")
    yield pool
    if not pool.broken:
        pool.run(rank_teardown)


def _units(world_size: int) -> list[UnitSpec]:
    units = []
    for name in algorithm_names():
        algo = get_algorithm(name)
        for op in algo.ops:
            for count in COUNTS:
                plan = plan_size(op, count * 4 * world_size, world_size, 4)
                roots = (0, world_size - 1) if op in ("broadcast", "reduce") else (0,)
                units += [
                    UnitSpec(op=op, algo=name, plan=plan, warmup=0, iters=1, check=True, root=root) for root in roots
                ]
    return units


def test_every_algorithm_and_op_matches_the_reference(gloo_ranks) -> None:
    n = gloo_ranks.world_size
    failures = []
    units = _units(n)
    assert {u.algo for u in units} >= {"native", "ring", "tree", "recursive_doubling", "rabenseifner"}
    for spec in units:
        merged = merge_rank_results(gloo_ranks.run(rank_measure, spec, timeout=60))
        assert merged["wrong"] is not None
        if merged["wrong"]:
            failures.append(f"{spec.algo} {spec.op} {spec.plan.nbytes} B root {spec.root}: {merged['wrong']} wrong")
        assert len(merged["ours"]) == 1 and merged["ours"][0] > 0
    assert not failures, failures


@pytest.mark.parametrize("algo", ["ring", "tree", "recursive_doubling", "rabenseifner", "hierarchical"])
def test_composite_algorithms_every_reduce_op(gloo_ranks, algo: str) -> None:
    checks = gloo_ranks.run(algo_tasks.reduce_ops, algo, 13, timeout=60)
    assert checks[0] >= len(algo_tasks.CASES)
    assert gloo_ranks.run(algo_tasks.non_contiguous, algo, timeout=60) == [1] * gloo_ranks.world_size


@pytest.mark.parametrize("algo", ["native", "ring", "tree", "recursive_doubling", "rabenseifner"])
def test_algorithms_on_a_sub_group(gloo_ranks, algo: str) -> None:
    n = gloo_ranks.world_size
    if n < 3:
        pytest.skip("a proper sub-group with a non-zero root needs 3 or more ranks")
    ranks = list(range(1, n))  # group rank r is global rank r + 1
    done = gloo_ranks.run(algo_tasks.sub_group, algo, ranks, 11, timeout=60)
    assert done == [0] + [1] * (n - 1)


@pytest.mark.parametrize("world_size", [1, 7])
def test_latency_and_halving_algorithms_beyond_four_ranks(comm_pools, world_size: int) -> None:
    """recursive_doubling and rabenseifner at world sizes 1 and 7 (non-powers of two fold ranks in a pre/post
    step; 2-4 run above): every reduce op against the reference with fewer elements than ranks, and a 4099-element
    sum that must match and hold identical bits on every rank."""
    pool = comm_pools.get(world_size)
    pool.run(rank_setup, "gloo")
    try:
        for algo in ("recursive_doubling", "rabenseifner"):
            assert pool.run(algo_tasks.reduce_ops, algo, 3, timeout=120)[0] >= len(algo_tasks.CASES)
            digests = pool.run(algo_tasks.same_bits_everywhere, algo, 4099, timeout=120)
            assert len(set(digests)) == 1, f"{algo}: ranks hold different bits at world size {world_size}"
    finally:
        if not pool.broken:
            pool.run(rank_teardown)
