"""``uv run python -m benchmark.hierarchical [--rate 1gbit] [--iters 5]``: all_reduce across two simulated hosts (the
netns lab, 2 ranks on each, the veth shaped with tbf), float32, 4 KiB to 64 MiB, side by side in one run:

- every algorithm on gloo, and raw torch.distributed Gloo over all 4 ranks (flat);
- ``get_comm_backend("auto")`` -- the hier composite (shm inside a host, gloo between) deciding per call, with its
  choice and reason -- and hier pinned to each of its paths (SAGELLM_COMM_HIER_ALGO=hierarchical / flat).

Needs root. Writes a markdown table and the records (JSON) to ``--output-dir`` (default .benchmarks/hierarchical).
"""

from __future__ import annotations

import argparse
from typing import Any

ALGOS = ["native", "ring", "rabenseifner", "recursive_doubling", "hierarchical"]
SIZES = ["4K", "64K", "1M", "16M", "64M"]


HIER = {"auto": "auto (hier)", "hierarchical": "hier pinned hierarchical", "flat": "hier pinned flat"}


def bench_rank(algos: list[str], sizes: list[str], warmup: int, iters: int, backend: str = "gloo",
               hier_algo: str | None = None) -> list[dict[str, Any]]:
    """One lab rank (torchrun environment set by the lab): the collective benchmark; on gloo with --compare torch,
    on ``auto`` (hier here) with its per-call path pinned by ``hier_algo`` (None: it decides)."""
    import os

    from sagellm_comm.benchmark import BenchConfig, run_benchmark

    os.environ["SAGELLM_COMM_HIER_ALGO"] = hier_algo or "auto"
    cfg = BenchConfig(ops=("all_reduce",), backends=(backend,), algos=tuple(algos), sizes=tuple(sizes),
                      warmup=warmup, iters=iters, check=True, compare="torch" if backend == "gloo" else "none",
                      output_dir=None)
    return [r.to_row() for r in run_benchmark(cfg, progress=False).records]


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

    return Network(nodes=2, ranks_per_node=2, intra=link("intra"), inter=link("inter"),
                   gamma_s_per_byte=links["gamma"])


def _table(rows: list[dict[str, Any]], hier_rows: dict[str, list[dict[str, Any]]], algos: list[str]) -> str:
    """One line per size: each gloo algorithm, hier pinned to each path, auto's time, choice and reason, flat raw
    gloo; auto against the best single algorithm of the same run."""
    by_size: dict[int, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_size.setdefault(r["bytes"], {})[r["algo_id"]] = r
    for label, hrows in hier_rows.items():
        for r in hrows:
            by_size.setdefault(r["bytes"], {})[label] = r
    pinned = [HIER[k] for k in ("hierarchical", "flat") if HIER[k] in hier_rows]
    cols = [f"gloo {a}" if a != "hierarchical" else "gloo hierarchical (one backend)" for a in algos] + pinned
    head = ("| size | " + " | ".join(f"{c} (ms)" for c in cols) + " | flat raw gloo (ms) | auto (ms) | auto's choice "
            "| auto vs best single | hier pinned hierarchical vs flat raw | reason |")
    lines = [head, "|" + "---:|" * (len(cols) + 6) + "---|"]
    for size, cells in sorted(by_size.items()):
        raw = min(c["raw_latency_ms"] for c in cells.values() if c.get("raw_latency_ms"))
        times = {c: cells[k]["latency_ms"] for c, k in zip(cols, list(algos) + pinned, strict=True) if k in cells}
        wrong = sum(c.get("wrong") or 0 for c in cells.values())
        auto = cells.get(HIER["auto"])
        best = min(times.values())
        two = times.get(HIER["hierarchical"])
        cells_text = " | ".join(f"{times[c]:.2f}" if c in times else "-" for c in cols)
        auto_text = (f"{auto['latency_ms']:.2f} | {auto['algo_id']} | {auto['latency_ms'] / best:.2f}x" if auto
                     else "- | - | -")
        two_text = f"{raw / two:.2f}x" if two else "-"
        reason = auto["selection_reason"] if auto else ""
        lines.append(f"| {size / 2**10:g} KiB | {cells_text} | {raw:.2f} | {auto_text} | {two_text} | {reason} |"
                     + (f" #wrong {wrong}" if wrong else ""))
    return "\n".join(lines) + "\n"


def _model_table(rows: list[dict[str, Any]], algos: list[str], links: dict[str, float]) -> str:
    """The cost model's prediction for every measured cell, its choice and how the choice did."""
    from sagellm_comm.algorithms.cost import choose, predict

    net = _network(links)
    modelled = tuple(a for a in algos if a in ("native", "ring", "recursive_doubling", "rabenseifner", "hierarchical"))
    def gbps(s_per_byte: float) -> str:
        return f"{1e-9 / s_per_byte:.3f} GB/s" if s_per_byte else "inf"

    lines = [f"link parameters measured in this run (gloo ping-pong, half round trip): intra alpha "
             f"{net.intra.alpha_s * 1e6:.0f} us, 1/beta {gbps(net.intra.beta_s_per_byte)}; inter alpha "
             f"{net.inter.alpha_s * 1e6:.0f} us, 1/beta {gbps(net.inter.beta_s_per_byte)}; 1/gamma "
             f"{gbps(net.gamma_s_per_byte)}", "",
             "| size | " + " | ".join(f"{a} predicted / measured (ms)" for a in modelled)
             + " | model's choice | its measured time vs the best measured | reason |",
             "|" + "---:|" * (len(modelled) + 1) + "---|---:|---|"]
    by_size: dict[int, dict[str, float]] = {}
    for r in rows:
        by_size.setdefault(r["bytes"], {})[r["algo_id"]] = r["latency_ms"]
    for size, measured in sorted(by_size.items()):
        pick, reason = choose(size, net, modelled)
        best = min(measured[a] for a in modelled if a in measured)
        cells = " | ".join(f"{predict(a, size, net) * 1e3:.2f} / {measured[a]:.2f}" if a in measured else "-"
                           for a in modelled)
        lines.append(f"| {size / 2**10:g} KiB | {cells} | {pick} | {measured[pick] / best:.2f}x | {reason} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.hierarchical", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", default="1gbit")
    p.add_argument("--burst", default="512kb")
    p.add_argument("--algos", nargs="+", default=ALGOS)
    p.add_argument("--sizes", nargs="+", default=SIZES)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--output-dir", default=".benchmarks/hierarchical")
    args = p.parse_args(argv)
    from benchmark import hierarchical as me  # the ranks unpickle the task by module name
    from benchmark.lab_report import netns_or_none, write_report

    netns = netns_or_none("benchmark.hierarchical")
    if netns is None:
        return 2
    import tempfile

    # hier measures its links at init; a cache of its own per run, so a previous run at another --rate is not reused
    links_cache = tempfile.mkdtemp(prefix="sagellm-hier-links-")
    with netns.NetnsLab(2, rate=args.rate, burst=args.burst) as lab:
        links = lab.run_ranks(me.link_rank, [0, 0, 1, 1], timeout=600, env={"OMP_NUM_THREADS": "1"},
                              master_port=29650)[0]
        rows = lab.run_ranks(me.bench_rank, [0, 0, 1, 1], args.algos, args.sizes, args.warmup, args.iters,
                             timeout=3600, env={"OMP_NUM_THREADS": "1"})[0]
        hier_rows = {label: lab.run_ranks(me.bench_rank, [0, 0, 1, 1], ["native"], args.sizes, args.warmup,
                                          args.iters, "auto", None if mode == "auto" else mode, timeout=3600,
                                          env={"OMP_NUM_THREADS": "1", "SAGELLM_COMM_TOPOLOGY_CACHE": links_cache})[0]
                     for mode, label in HIER.items()}
    text = (f"## all_reduce float32, 2 simulated hosts x 2 ranks (netns lab), veth tbf {args.rate} "
            f"(burst {args.burst}), gloo; {args.warmup} warmup + {args.iters} timed iterations, median of the "
            "per-iteration max over ranks; every result checked\n\n" + _table(rows, hier_rows, args.algos)
            + "\n### The cost model (sagellm_comm.algorithms.cost) against these measurements\n\n"
            + _model_table(rows, args.algos, links))
    print(text)
    write_report(args.output_dir, "hierarchical", text, {"rate": args.rate, "links": links, "rows": rows,
                                                                "hier_rows": hier_rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
