"""Rank functions for the hier backend's tests (module-level so spawned and netns ranks import them by name)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch

from sagellm_comm import get_comm_backend

SIZES = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20]


def _check(what: str, got: torch.Tensor, want: torch.Tensor) -> None:
    if not torch.equal(got, want):
        bad = (got != want).nonzero()[:3].flatten().tolist()
        raise AssertionError(f"{what}: wrong at {bad}: {got.flatten()[bad].tolist()} != {want.flatten()[bad].tolist()}")


def two_level_ops(comm: Any, numel: int) -> int:
    """The four two-level ops on the world, integer-valued floats (exact in any order), against references."""
    r, n = comm.get_rank(), comm.get_world_size()
    checks = 0
    refs = {"sum": lambda vs: sum(vs), "max": lambda vs: torch.stack(vs).amax(0), "avg": lambda vs: sum(vs) / n}
    for op, ref in refs.items():
        t = torch.arange(numel, dtype=torch.float32) % 7 + r
        comm.all_reduce(t, op=op)
        want = ref([torch.arange(numel, dtype=torch.float32) % 7 + q for q in range(n)])
        _check(f"all_reduce {op} {numel}", t, want)
        checks += 1
    mine = torch.arange(numel, dtype=torch.float32) + 1000 * r
    out = torch.empty(n * numel)
    comm.all_gather_into_tensor(out, mine)
    _check("all_gather", out, torch.cat([torch.arange(numel, dtype=torch.float32) + 1000 * q for q in range(n)]))
    inp = torch.arange(n * numel, dtype=torch.float32) * (r + 1)
    got = torch.empty(numel)
    comm.reduce_scatter(got, inp)
    _check("reduce_scatter", got, torch.arange(r * numel, (r + 1) * numel, dtype=torch.float32) * (n * (n + 1) // 2))
    for root in range(n):
        b = torch.full((numel,), float(r))
        comm.broadcast(b, src_rank=root)
        _check(f"broadcast from {root}", b, torch.full((numel,), float(root)))
    return checks + 2 + n


def auto_across_hosts(numel: int) -> dict[str, Any]:
    """A netns lab rank: ``get_comm_backend("auto")``, its reason, its decisions at every size, the two-level ops
    checked, the bits of a float all_reduce (must match on every rank)."""
    comm = get_comm_backend("auto")
    comm.init_process_group(timeout=120.0)
    try:
        out: dict[str, Any] = {"name": comm.name, "because": comm.selected_because}
        if comm.name != "hier":
            return out
        out["decisions"] = [(s, *vars(comm.explain("all_reduce", s)).values()) for s in SIZES]
        out["nodes"] = [list(n) for n in comm.nodes]
        out["checks"] = two_level_ops(comm, numel)
        t = torch.randn(300_007, generator=torch.Generator().manual_seed(comm.get_rank()))
        comm.all_reduce(t)
        out["digest"] = hashlib.sha256(t.numpy().tobytes()).hexdigest()
        out["last"] = comm.last_decision.algo
        return out
    finally:
        comm.destroy()


def layouts_and_groups(name: str) -> dict[str, Any]:
    """A RankPool rank (hier, ranks_per_node from the environment): sub-groups across and inside simulated nodes,
    P2P between and inside nodes, and the decisions of every rank for every op and size."""
    comm = get_comm_backend(name)
    comm.init_process_group(timeout=60.0)
    try:
        r, n = comm.get_rank(), comm.get_world_size()
        out: dict[str, Any] = {"nodes": [list(x) for x in comm.nodes], "checks": two_level_ops(comm, 1001)}
        across = comm.create_group([0, 1, n - 1])  # 2 + 1 over two nodes: leaders for all_reduce
        inside = comm.create_group([n - 2, n - 1])  # one node
        if r in (0, 1, n - 1):
            t = torch.full((5000,), float(r + 1))
            comm.all_reduce(t, group=across)
            _check("all_reduce on [0,1,last]", t, torch.full((5000,), float(1 + 2 + n)))
            out["across"] = comm.last_decision.algo
        if r in (n - 2, n - 1):
            t = torch.full((77,), float(r))
            comm.all_reduce(t, group=inside)
            _check("all_reduce inside a node", t, torch.full((77,), float(2 * n - 3)))
            out["inside"] = comm.last_decision.algo
        # P2P: rank 0 to its node neighbour (intra transport) and to the last rank (inter)
        for peer in (1, n - 1):
            if r == 0:
                comm.send(torch.arange(9, dtype=torch.int64) * peer, peer, tag=3)
            elif r == peer:
                buf = torch.empty(9, dtype=torch.int64)
                comm.recv(buf, 0, tag=3)
                _check(f"recv from 0 at {peer}", buf, torch.arange(9, dtype=torch.int64) * peer)
        out["decisions"] = [
            (op, s, comm.explain(op, s).algo, comm.explain(op, s).reason)
            for op in ("all_reduce", "all_gather", "reduce_scatter", "broadcast")
            for s in SIZES
        ]
        comm.barrier()
        return out
    finally:
        comm.destroy()


def env_of(*names: str) -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in names}


def bench_auto(sizes: list[str]) -> list[dict[str, Any]]:
    """A netns lab rank: the collective benchmark with ``--backend auto --algo auto``."""
    from sagellm_comm.benchmark import BenchConfig, run_benchmark

    cfg = BenchConfig(
        ops=("all_reduce",),
        backends=("auto",),
        algos=("auto",),
        sizes=tuple(sizes),
        warmup=0,
        iters=1,
        check=True,
        output_dir=None,
    )
    return [r.to_row() for r in run_benchmark(cfg, progress=False).records]


def lone_first_node(node_ids: str) -> dict[str, Any]:
    """A RankPool rank: hier with explicit ``node_ids`` whose first node holds one rank (the intra link is measured
    on the next node), an all_reduce checked, the links' pairs."""
    comm = get_comm_backend("hier", node_ids=node_ids)
    comm.init_process_group(timeout=60.0)
    try:
        n = comm.get_world_size()
        t = torch.full((4099,), float(comm.get_rank() + 1))
        comm.all_reduce(t)
        _check("all_reduce", t, torch.full((4099,), float(n * (n + 1) // 2)))
        return {
            "pairs": [(p["a"], p["b"], p["scope"]) for p in comm.links.pairs],
            "source": comm.links.source,
            "intra_beta": comm.links.intra.beta_s_per_byte,
        }
    finally:
        comm.destroy()
