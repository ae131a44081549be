"""``uv run python -m benchmark.overlap [--rate 1gbit] [--iters 9]``: communication hidden behind compute, on two
simulated hosts (the netns lab, one rank each, the veth shaped with tbf so that communication is wire-bound).

Two parts, in one run:

1. the seed's overlap benchmark (``run_overlap_benchmark`` on gloo, each lab rank one torchrun-style rank): comm
   alone, compute alone and both overlapped for each (size, duration) cell, with overlap_efficiency;
2. the tensor-parallel layers of comm-overlap against their non-overlapped versions and against raw
   torch.distributed Gloo written by hand: row-parallel linear + all_reduce, and all_gather + column-parallel
   linear. Sizes are calibrated on the spot so that the layer's compute and communication take about as long as
   each other (the case overlap is for). Variants alternate block by block after a barrier; medians reported.

Needs root (the netns lab). On 2 cores shared-memory transfers cannot overlap with compute (the copy needs the
core the compute uses), so only the wire-bound case is shown. Output: a markdown report and a JSON record in
``--output-dir`` (default ``.benchmarks/overlap``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

DEFAULT_RATE = "500mbit"
DEFAULT_BURST = "256kb"
PROBE_K = 256


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1e3


def seed_rank(
    comm_bytes: list[int], compute_ms: list[float], warmup: int, iters: int, output_dir: str
) -> list[dict[str, Any]]:
    """One lab rank of the seed's benchmark (the lab sets the torchrun environment)."""
    import torch

    from sagellm_comm.benchmark import run_overlap_benchmark

    torch.set_num_threads(1)
    records = run_overlap_benchmark(
        comm_bytes=comm_bytes,
        compute_durations_ms=compute_ms,
        output_dir=output_dir,
        warmup_iters=warmup,
        benchmark_iters=iters,
        backend="gloo",
    )
    return [r.to_row() for r in records]


def _timer(comm: Any, fns: dict[str, Any], iters: int) -> dict[str, float]:
    """Median ms of each variant; variants alternate (A B C, C B A, ...) after a barrier each."""
    names = list(fns)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for n in names:  # warm-up: threads, connections, allocator
        fns[n]()
    for i in range(iters):
        for n in names if i % 2 == 0 else names[::-1]:
            comm.barrier()
            t0 = time.perf_counter()
            fns[n]()
            samples[n].append(time.perf_counter() - t0)
    return {n: _median_ms(v) for n, v in samples.items()}


def _agree(comm: Any, value: int) -> int:
    """Rank 0's value on every rank."""
    import torch

    t = torch.tensor([value], dtype=torch.int64)
    comm.broadcast(t, src_rank=0)
    return int(t.item())


def tp_rank(iters: int, chunk_counts: list[int]) -> dict[str, Any]:
    """One lab rank: the two tensor-parallel layers, plain / chunked (ours) / raw torch.distributed."""
    import torch
    import torch.distributed as dist

    from sagellm_comm import get_comm_backend
    from sagellm_comm_overlap import all_gather_column_parallel_linear, comm_stream, row_parallel_linear

    torch.set_num_threads(1)
    comm = get_comm_backend("gloo")
    comm.init_process_group(timeout=120.0)
    raw = dist.new_group(backend="gloo")
    world, rank = comm.get_world_size(), comm.get_rank()
    gen = torch.Generator().manual_seed(rank)
    out: dict[str, Any] = {"rank": rank}
    try:
        with comm_stream("cpu") as stream:
            # ---- row-parallel linear + all_reduce: y [tokens, out] is what crosses the wire
            tokens, out_features = 1024, 2048
            y = torch.empty(tokens, out_features)

            def comm_only() -> None:
                comm.all_reduce(y)

            probe_x, probe_w = (
                torch.randn(tokens, PROBE_K, generator=gen),
                torch.randn(out_features, PROBE_K, generator=gen),
            )
            probe = _timer(comm, {"mm": lambda: torch.mm(probe_x, probe_w.t()), "comm": comm_only}, 5)
            k = _agree(comm, max(16, round(PROBE_K * probe["comm"] / probe["mm"] / 16) * 16))
            x, w = torch.randn(tokens, k, generator=gen), torch.randn(out_features, k, generator=gen)

            def raw_plain() -> None:
                dist.all_reduce(torch.mm(x, w.t()), group=raw)

            def raw_chunked(c: int) -> None:
                works = []
                for part in torch.tensor_split(x, c):
                    yc = torch.mm(part, w.t())
                    works.append(dist.all_reduce(yc, group=raw, async_op=True))
                for wk in works:
                    wk.wait()

            fns = {
                "compute alone": lambda: torch.mm(x, w.t()),
                "comm alone": comm_only,
                "plain (ours)": lambda: row_parallel_linear(x, w, comm),
                "plain (raw torch)": raw_plain,
            }
            for c in chunk_counts:
                fns[f"chunks={c} (ours)"] = lambda c=c: row_parallel_linear(x, w, comm, chunks=c, stream=stream)
                fns[f"chunks={c} (raw torch async)"] = lambda c=c: raw_chunked(c)
            out["row"] = {
                "shape": f"x [{tokens}, {k}] @ W [{out_features}, {k}]^T, all_reduce "
                f"{tokens * out_features * 4 / 2**20:.0f} MiB",
                "ms": _timer(comm, fns, iters),
            }

            # ---- all_gather + column-parallel linear: x's rows cross the wire
            rows_local, in_features = 512, 2048
            xl = torch.randn(rows_local, in_features, generator=gen)
            gathered = torch.empty(world * rows_local, in_features)
            probe_w = torch.randn(PROBE_K, in_features, generator=gen)
            probe = _timer(
                comm,
                {
                    "mm": lambda: torch.mm(gathered, probe_w.t()),
                    "comm": lambda: comm.all_gather_into_tensor(gathered, xl),
                },
                5,
            )
            n_out = _agree(comm, max(16, round(PROBE_K * probe["comm"] / probe["mm"] / 16) * 16))
            wc = torch.randn(n_out, in_features, generator=gen)

            def raw_gather_plain() -> None:
                full = torch.empty(world * rows_local, in_features)
                dist.all_gather_into_tensor(full, xl, group=raw)
                torch.mm(full, wc.t())

            fns = {
                "compute alone": lambda: torch.mm(gathered, wc.t()),
                "comm alone": lambda: comm.all_gather_into_tensor(gathered, xl),
                "plain (ours)": lambda: all_gather_column_parallel_linear(xl, wc, comm),
                "plain (raw torch)": raw_gather_plain,
            }
            for c in chunk_counts:
                fns[f"chunks={c} (ours)"] = lambda c=c: all_gather_column_parallel_linear(
                    xl, wc, comm, chunks=c, stream=stream
                )
            out["column"] = {
                "shape": f"all_gather x [{rows_local}, {in_features}] per rank "
                f"({rows_local * in_features * 4 / 2**20:.0f} MiB), then @ W [{n_out}, "
                f"{in_features}]^T",
                "ms": _timer(comm, fns, iters),
            }
        return out
    finally:
        dist.destroy_process_group(raw)
        comm.destroy()


def _seed_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| comm bytes | compute asked (ms) | comm alone (ms) | compute alone (ms) | sequential (ms) | ideal (ms) "
        "| total (ms) | compute during overlap (ms) | overlap_efficiency | overlap_ratio | within 2x |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        a, b = r["comm_alone_ms"], r["compute_alone_ms"]
        within = "yes" if max(a, b) <= 2 * min(a, b) else ""
        eff = "-" if r["overlap_efficiency"] is None else f"{r['overlap_efficiency']:.2f}"
        ratio = "-" if r["overlap_ratio"] is None else f"{r['overlap_ratio']:.2f}"
        lines.append(
            f"| {r['comm_bytes'] / 2**20:g} MiB | {r['compute_duration_ms']:g} | {a:.1f} | {b:.1f} | "
            f"{r['theoretical_sequential_ms']:.1f} | {r['theoretical_overlap_ms']:.1f} | {r['total_ms']:.1f} "
            f"| {r['compute_ms']:.1f} | {eff} | {ratio} | {within} |"
        )
    return "\n".join(lines) + "\n"


def _tp_markdown(title: str, part: dict[str, Any]) -> str:
    ms = part["ms"]
    comp, wire = ms["compute alone"], ms["comm alone"]
    plain = ms["plain (ours)"]
    lines = [
        f"### {title}: {part['shape']}",
        "",
        f"compute alone {comp:.1f} ms, communication alone {wire:.1f} ms: sequential {comp + wire:.1f} ms, "
        f"ideal max {max(comp, wire):.1f} ms",
        "",
        "| variant | time (ms) | speedup vs plain (ours) | efficiency |",
        "|---|---:|---:|---:|",
    ]
    for name, t in ms.items():
        if name in ("compute alone", "comm alone"):
            continue
        eff = (comp + wire - t) / (comp + wire - max(comp, wire))
        lines.append(f"| {name} | {t:.1f} | {plain / t:.2f}x | {min(1.0, max(0.0, eff)):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.overlap", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--rate", default=DEFAULT_RATE, help=f"tbf rate of each simulated host's link (default {DEFAULT_RATE})"
    )
    p.add_argument("--comm-bytes", nargs="+", type=int, default=[1 << 20, 4 << 20, 8 << 20])
    p.add_argument("--compute-ms", nargs="+", type=float, default=[10.0, 40.0, 150.0])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=9)
    p.add_argument("--chunks", nargs="+", type=int, default=[2, 4, 8])
    p.add_argument("--burst", default=DEFAULT_BURST, help=f"tbf burst (default {DEFAULT_BURST})")
    p.add_argument("--mtu", type=int, default=1500, help="MTU of the lab's links (default 1500)")
    p.add_argument("--parts", nargs="+", choices=["seed", "tp"], default=["seed", "tp"])
    p.add_argument("--output-dir", default=".benchmarks/overlap")
    args = p.parse_args(argv)
    from benchmark.lab_report import netns_or_none, write_report

    netns = netns_or_none("benchmark.overlap")
    if netns is None:
        return 2
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = {"OMP_NUM_THREADS": "1"}
    from benchmark import overlap as me  # the ranks unpickle the tasks by module name, not __main__

    seed: list[dict[str, Any]] = []
    tp: dict[str, Any] = {}
    with netns.NetnsLab(2, rate=args.rate, burst=args.burst, mtu=args.mtu) as lab:
        if "seed" in args.parts:
            seed = lab.run_ranks(
                me.seed_rank,
                [0, 1],
                args.comm_bytes,
                args.compute_ms,
                args.warmup,
                args.iters,
                str(out.resolve()),
                timeout=1800,
                env=env,
            )[0]
        if "tp" in args.parts:
            tp = lab.run_ranks(me.tp_rank, [0, 1], args.iters, args.chunks, timeout=1800, env=env, master_port=29600)[0]
    report = [
        f"## Overlap on two simulated hosts (netns lab, 1 rank each, veth shaped to {args.rate} with tbf "
        f"(burst {args.burst}), MTU {args.mtu}, gloo, 1 compute thread per rank)\n"
    ]
    if seed:
        report += [
            "### The seed's overlap benchmark (`run_overlap_benchmark`, all_reduce float32)\n",
            _seed_markdown(seed),
        ]
    if tp:
        report += [
            _tp_markdown("Row-parallel linear + all_reduce", tp["row"]),
            _tp_markdown("all_gather + column-parallel linear", tp["column"]),
        ]
    text = "\n".join(report)
    print(text)
    write_report(
        args.output_dir,
        "overlap_netns",
        text,
        {"rate": args.rate, "burst": args.burst, "mtu": args.mtu, "seed": seed, "tp": tp},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
