"""Rank-side checks of the composite algorithms beyond the benchmark's sum: every reduce op, roots other than 0,
non-contiguous tensors, against the conformance kit's references. Run by test_bench_algorithms.py on ranks set up
with ``rank_setup("gloo")``."""

from __future__ import annotations

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.algorithms import get_algorithm
from sagellm_comm.benchmark.rank import current_comm
from sagellm_comm.testing.reference import check_equal, make_input, reduce_reference, tolerance

CASES = [
    (ReduceOp.SUM, torch.float32),
    (ReduceOp.AVG, torch.float32),
    (ReduceOp.MAX, torch.int32),
    (ReduceOp.MIN, torch.float16),
    (ReduceOp.PROD, torch.int64),
    (ReduceOp.BXOR, torch.int32),
    (ReduceOp.SUM, torch.bfloat16),
]


def reduce_ops(algo: str, numel: int) -> int:
    """all_reduce with every case; reduce (tree) to the last rank. Returns the number of checks."""
    comm = current_comm()
    g = comm.world_group
    n, r = g.world_size, g.rank
    impl = get_algorithm(algo)
    checks = 0
    for op, dtype in CASES:
        inputs = [make_input(i, numel, dtype, op) for i in range(n)]
        want = reduce_reference(inputs, op, dtype)
        t = inputs[r].clone()
        impl.fn("all_reduce")(comm, t, op, None)
        check_equal(f"{algo} all_reduce {op.value} {dtype}", t, want, **tolerance(dtype, op))
        checks += 1
        if impl.supports("reduce"):
            t = inputs[r].clone()
            impl.fn("reduce")(comm, t, n - 1, op, None)
            if r == n - 1:
                check_equal(f"{algo} reduce {op.value} {dtype} to {n - 1}", t, want, **tolerance(dtype, op))
            checks += 1
    return checks


def non_contiguous(algo: str) -> int:
    """all_reduce of a transposed (non-contiguous) tensor leaves the tensor's own view right."""
    comm = current_comm()
    g = comm.world_group
    base = [make_input(i, 6 * 5, torch.float32).view(6, 5) for i in range(g.world_size)]
    t = base[g.rank].clone().t()
    assert not t.is_contiguous()
    get_algorithm(algo).fn("all_reduce")(comm, t, "sum", None)
    check_equal(f"{algo} non-contiguous", t, reduce_reference(base, ReduceOp.SUM, torch.float32).t())
    return 1


def sub_group(algo: str, ranks: list[int], numel: int) -> int:
    """all_reduce (and broadcast/reduce where the algorithm has them, rooted at group rank 1) on a sub-group:
    roots and peers are group ranks, translated to global ranks by the backend."""
    comm = current_comm()
    g = comm.create_group(ranks)
    if not g.is_member:
        return 0
    impl = get_algorithm(algo)
    inputs = [make_input(i, numel, torch.float32) for i in range(g.world_size)]
    want = reduce_reference(inputs, ReduceOp.SUM, torch.float32)
    t = inputs[g.rank].clone()
    impl.fn("all_reduce")(comm, t, "sum", g)
    check_equal(f"{algo} all_reduce on {ranks}", t, want)
    if impl.supports("broadcast"):
        t = inputs[g.rank].clone()
        impl.fn("broadcast")(comm, t, 1, g)
        check_equal(f"{algo} broadcast from group rank 1 on {ranks}", t, inputs[1])
    return 1


def same_bits_everywhere(algo: str, numel: int) -> str:
    """all_reduce(sum) of float32 values whose sums depend on the order of addition: the result must match the
    reference and be bit-for-bit the same on every rank (returned as a digest the caller compares)."""
    import hashlib

    comm = current_comm()
    g = comm.world_group
    inputs = [make_input(i, numel, torch.float32) * (1.0 + 1e-3 * i) for i in range(g.world_size)]
    t = inputs[g.rank].clone()
    get_algorithm(algo).fn("all_reduce")(comm, t, "sum", None)
    check_equal(
        f"{algo} all_reduce float32", t, reduce_reference(inputs, ReduceOp.SUM, torch.float32), rtol=1e-5, atol=1e-5
    )  # inexact inputs: the order of additions shows in the last bits
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def gather_scatter_broadcast(algo: str, numel: int) -> int:
    """all_gather, reduce_scatter (sum, avg) and broadcast from every root, against the references."""
    comm = current_comm()
    g = comm.world_group
    n, r = g.world_size, g.rank
    impl = get_algorithm(algo)
    inputs = [make_input(i, numel, torch.float32) for i in range(n)]
    out = torch.empty(n * numel)
    impl.fn("all_gather")(comm, out, inputs[r], None)
    check_equal(f"{algo} all_gather", out, torch.cat(inputs))
    big = [make_input(i, n * numel, torch.float32) for i in range(n)]
    for op in (ReduceOp.SUM, ReduceOp.AVG):
        got = torch.empty(numel)
        impl.fn("reduce_scatter")(comm, got, big[r], op, None)
        want = reduce_reference(big, op, torch.float32)[r * numel : (r + 1) * numel]
        check_equal(f"{algo} reduce_scatter {op.value}", got, want, **tolerance(torch.float32, op))
    for root in range(n):
        t = inputs[r].clone()
        impl.fn("broadcast")(comm, t, root, None)
        check_equal(f"{algo} broadcast from {root}", t, inputs[root])
    return 3 + n


def on_simulated_nodes(numel: int) -> dict:
    """On a rank of the netns lab: the hierarchical all_reduce with every reduce op, identical bits everywhere, and
    the node layout it found."""
    from sagellm_comm.algorithms.hierarchical import node_layout
    from sagellm_comm.benchmark.rank import rank_setup, rank_teardown

    rank_setup("gloo")
    try:
        checks = reduce_ops("hierarchical", numel) + gather_scatter_broadcast("hierarchical", numel)
        digest = same_bits_everywhere("hierarchical", 4099)
        digest += same_bits_everywhere("hierarchical", 1_500_007)  # 6 MB: pipelined in segments, odd splits
        layout = node_layout(current_comm())
        return {"checks": checks, "digest": digest, "nodes": [list(n) for n in layout.nodes], "uniform": layout.uniform}
    finally:
        rank_teardown()
