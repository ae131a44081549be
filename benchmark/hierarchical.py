"""``uv run python -m benchmark.hierarchical [--rate 1gbit] [--blocks 7]``: all_reduce across two simulated hosts
(the netns lab, 2 ranks on each, the veth shaped with tbf), float32, 4 KiB to 64 MiB, every contender side by side
in one run, interleaved block by block on the same rank processes (so they share the machine's noise):

- ``auto``: ``get_comm_backend("auto")``, which across hosts is the hier composite (shm inside a host, gloo between)
  deciding per call, with its choice and reason; and hier pinned to each of its paths (hierarchical, flat);
- every algorithm over gloo (hier's inter-host transport): native, ring, rabenseifner, recursive_doubling and the
  one-backend hierarchical on gloo's sub-groups;
- raw torch.distributed Gloo over all 4 ranks (flat): ``dist.all_reduce`` on the same processes.

Every contender's result is checked first. Needs root. Writes a markdown table and the records (JSON) to
``--output-dir`` (default .benchmarks/hierarchical).
"""

from __future__ import annotations

import argparse
from typing import Any

ALGOS = ["native", "ring", "rabenseifner", "recursive_doubling", "hierarchical"]
SIZES = ["4K", "16K", "64K", "256K", "1M", "4M", "16M", "64M"]
HIER = ("auto", "hierarchical", "flat")


def _contenders(comm: Any, algos: list[str]) -> dict[str, Any]:
    """name -> fn(tensor): every contender's all_reduce (sum) in place."""
    import torch.distributed as dist

    from sagellm_comm.algorithms import get_algorithm

    def hier(mode: str) -> Any:
        def run(t: Any) -> None:
            comm.pin(mode)
            try:
                comm.all_reduce(t)
            finally:
                comm.pin("auto")

        return run

    out: dict[str, Any] = {f"hier {m}" if m != "auto" else "auto": hier(m) for m in HIER}
    for algo in algos:
        fn = get_algorithm(algo).fn("all_reduce")
        out[f"gloo {algo}"] = (lambda f: lambda t: f(comm.inter, t, "sum", None))(fn)
    out["raw gloo"] = lambda t: dist.all_reduce(t)
    return out


def bench_rank(
    algos: list[str], sizes: list[str], warmup: int, blocks: int, small_calls: int, small_blocks: int | None = None
) -> list[dict]:
    """One lab rank (the launcher's environment set by the lab: WORLD_SIZE 4, LOCAL_WORLD_SIZE 2)."""
    import statistics

    import torch
    import torch.distributed as dist

    from sagellm_comm import get_comm_backend
    from sagellm_comm.benchmark.metrics import parse_size
    from sagellm_comm.benchmark.timing import interleaved

    torch.set_num_threads(1)
    comm = get_comm_backend("auto")
    comm.init_process_group(timeout=600.0)
    try:
        if comm.name != "hier":
            raise RuntimeError(f"auto chose {comm.name!r} across the lab's hosts, not hier: {comm.selected_because}")
        rank, n = comm.get_rank(), comm.get_world_size()
        engines = _contenders(comm, algos)
        barriers = {
            k: (dist.barrier if k == "raw gloo" else comm.inter.barrier if k.startswith("gloo") else comm.barrier)
            for k in engines
        }
        rows = []
        for size in sizes:
            nbytes = parse_size(size)
            numel = nbytes // 4
            wrong = {}
            for name, fn in engines.items():  # checked first: integer-valued floats sum exactly in any order
                t = torch.arange(numel, dtype=torch.float32) % 13 + rank
                fn(t)
                want = (torch.arange(numel, dtype=torch.float32) % 13) * n + n * (n - 1) // 2
                wrong[name] = int((t != want).sum())
            comm.pin("auto")
            decision = comm.explain("all_reduce", nbytes)
            bufs = {k: torch.zeros(numel) for k in engines}  # zeros: the sums stay finite, the cost is the same
            small = nbytes <= (1 << 20)  # latency-bound: more calls per block, more blocks (the noise is larger)
            calls, nblocks = (small_calls, small_blocks or blocks) if small else (1, blocks)
            times = interleaved(
                {k: (lambda f, b: lambda: f(b))(fn, bufs[k]) for k, fn in engines.items()},
                blocks=nblocks,
                calls=calls,
                warmup=warmup,
                barriers=barriers,
            )
            flat = torch.tensor(
                [x for k in engines for x in times[k]] + [float(v) for v in wrong.values()], dtype=torch.float64
            )
            comm.inter.all_reduce(flat, op="max")  # per block: the slowest rank; wrong: any rank's count
            per = flat[: len(engines) * nblocks].view(len(engines), nblocks)
            rows.append(
                {
                    "bytes": nbytes,
                    "calls": calls,
                    "blocks": nblocks,
                    "ms": {k: statistics.median(per[i].tolist()) * 1e3 for i, k in enumerate(engines)},
                    "wrong": {k: int(flat[len(engines) * nblocks + i]) for i, k in enumerate(engines)},
                    "decision": [decision.algo, decision.rule_id, decision.reason],
                }
            )
        return rows
    finally:
        comm.destroy()


def link_rank(reps: int = 5) -> dict[str, float]:
    """One lab rank: ping-pong 4 B and 4 MiB between rank 0 and rank 1 (same node) and rank 0 and rank 2 (other
    node) on gloo, and the local reduction's cost; alpha = half the small round trip, beta from the large one."""
    import statistics
    import time

    import torch

    from sagellm_comm import get_comm_backend

    torch.set_num_threads(1)
    comm = get_comm_backend("gloo")
    comm.init_process_group(timeout=120.0)
    rank, out = comm.get_rank(), {}
    big_n = 4 << 20
    try:
        for peer, name in ((1, "intra"), (2, "inter")):
            for nbytes in (4, big_n):
                t = torch.zeros(nbytes // 4)
                times = []
                for _ in range(reps + 1):
                    comm.barrier()
                    t0 = time.perf_counter()
                    if rank == 0:
                        comm.send(t, peer)
                        comm.recv(t, peer)
                    elif rank == peer:
                        comm.recv(t, 0)
                        comm.send(t, 0)
                    times.append(time.perf_counter() - t0)
                out[f"{name}_{nbytes}"] = statistics.median(times[1:]) / 2
        a, b = torch.rand(big_n // 4), torch.rand(big_n // 4)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.add(a, b, out=a)
            times.append(time.perf_counter() - t0)
        out["gamma"] = statistics.median(times) / big_n
        out["big_n"] = big_n
        return out
    finally:
        comm.destroy()


def _network(links: dict[str, float]) -> Any:
    from sagellm_comm.algorithms.cost import Link, Network

    def link(name: str) -> Link:
        alpha = links[f"{name}_4"]
        return Link(alpha, max(0.0, (links[f"{name}_{links['big_n']}"] - alpha) / links["big_n"]))

    return Network(nodes=2, ranks_per_node=2, intra=link("intra"), inter=link("inter"), gamma_s_per_byte=links["gamma"])


def _table(rows: list[dict[str, Any]]) -> str:
    """One line per size: every contender, auto's choice, auto against the best single contender, the two-level
    path against flat raw gloo."""
    names = list(rows[0]["ms"])
    singles = [k for k in names if k != "auto"]
    head = (
        "| size | " + " | ".join(f"{k} (ms)" for k in names) + " | auto's choice | best single | auto vs best "
        "single | hier hierarchical vs raw gloo | why (hier's cost model) |"
    )
    lines = [head, "|" + "---:|" * (len(names) + 1) + "---|---|---:|---:|---|"]
    for r in rows:
        ms = r["ms"]
        best = min(singles, key=ms.get)
        why = r["decision"][2].split("; links:")[0]
        bad = {k: v for k, v in r["wrong"].items() if v}
        lines.append(
            f"| {r['bytes'] / 2**10:g} KiB | "
            + " | ".join(f"{ms[k]:.2f}" for k in names)
            + f" | {r['decision'][0]} | {best} | {ms['auto'] / ms[best]:.2f}x | "
            f"{ms['raw gloo'] / ms['hier hierarchical']:.2f}x | {why} |" + (f" WRONG {bad}" if bad else "")
        )
    return "\n".join(lines) + "\n"


def _model_table(rows: list[dict[str, Any]], algos: list[str], links: dict[str, float]) -> str:
    """The cost model's prediction for every measured cell, its choice and how the choice did."""
    from sagellm_comm.algorithms.cost import choose, predict

    net = _network(links)
    modelled = tuple(a for a in algos if a in ("native", "ring", "recursive_doubling", "rabenseifner", "hierarchical"))

    def gbps(s_per_byte: float) -> str:
        return f"{1e-9 / s_per_byte:.3f} GB/s" if s_per_byte else "inf"

    lines = [
        f"link parameters measured in this run (gloo ping-pong, half round trip): intra alpha "
        f"{net.intra.alpha_s * 1e6:.0f} us, 1/beta {gbps(net.intra.beta_s_per_byte)}; inter alpha "
        f"{net.inter.alpha_s * 1e6:.0f} us, 1/beta {gbps(net.inter.beta_s_per_byte)}; 1/gamma "
        f"{gbps(net.gamma_s_per_byte)}",
        "",
        "| size | "
        + " | ".join(f"{a} predicted / measured (ms)" for a in modelled)
        + " | model's choice | its measured time vs the best measured | reason |",
        "|" + "---:|" * (len(modelled) + 1) + "---|---:|---|",
    ]
    for r in rows:
        size, measured = r["bytes"], {a: r["ms"][f"gloo {a}"] for a in algos if f"gloo {a}" in r["ms"]}
        pick, reason = choose(size, net, modelled)
        best = min(measured[a] for a in modelled if a in measured)
        cells = " | ".join(
            f"{predict(a, size, net) * 1e3:.2f} / {measured[a]:.2f}" if a in measured else "-" for a in modelled
        )
        lines.append(f"| {size / 2**10:g} KiB | {cells} | {pick} | {measured[pick] / best:.2f}x | {reason} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.hierarchical", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", default="1gbit")
    p.add_argument("--burst", default="512kb")
    p.add_argument("--algos", nargs="+", default=ALGOS, help="algorithms over gloo (default: all five)")
    p.add_argument("--sizes", nargs="+", default=SIZES)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--blocks", type=int, default=9, help="timed blocks per contender above 1 MiB (default 9)")
    p.add_argument("--small-blocks", type=int, default=25, help="timed blocks up to 1 MiB (default 25)")
    p.add_argument(
        "--small-calls", type=int, default=8, help="back-to-back calls per timed block up to 1 MiB (default 8; 1 above)"
    )
    p.add_argument("--output-dir", default=".benchmarks/hierarchical")
    args = p.parse_args(argv)
    from benchmark import hierarchical as me  # the ranks unpickle the task by module name
    from benchmark.lab_report import netns_or_none, write_report

    netns = netns_or_none("benchmark.hierarchical")
    if netns is None:
        return 2
    import tempfile

    # hier measures its links at init; a cache of its own per run, so a previous run at another --rate is not reused
    env = {"OMP_NUM_THREADS": "1", "SAGELLM_COMM_TOPOLOGY_CACHE": tempfile.mkdtemp(prefix="sagellm-hier-links-")}
    with netns.NetnsLab(2, rate=args.rate, burst=args.burst) as lab:
        links = lab.run_ranks(me.link_rank, [0, 0, 1, 1], timeout=600, env={"OMP_NUM_THREADS": "1"}, master_port=29650)[
            0
        ]
        rows = lab.run_ranks(
            me.bench_rank,
            [0, 0, 1, 1],
            args.algos,
            args.sizes,
            args.warmup,
            args.blocks,
            args.small_calls,
            args.small_blocks,
            timeout=3600,
            env=env,
        )[0]
    hier_links = rows[0]["decision"][2].split("; links: ")[-1] if rows else "-"
    text = (
        f"## all_reduce float32, 2 simulated hosts x 2 ranks (netns lab), veth tbf {args.rate} (burst "
        f"{args.burst}); every contender interleaved block by block on the same ranks: {args.warmup} warmup, "
        f"timed blocks: {args.small_blocks} of {args.small_calls} back-to-back calls up to 1 MiB, "
        f"{args.blocks} of 1 call above; "
        "median over blocks of the slowest rank's time per call; every result checked first\n\n"
        f"hier's links (measured at its init): {hier_links}\n\n"
        + _table(rows)
        + "\n### The cost model (sagellm_comm.algorithms.cost) on the algorithms over gloo\n\n"
        + _model_table(rows, args.algos, links)
    )
    print(text)
    write_report(args.output_dir, "hierarchical", text, {"rate": args.rate, "links": links, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
