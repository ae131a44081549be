"""``uv run python -m benchmark.hierarchical [--rate 1gbit] [--iters 5]``: all_reduce across two simulated hosts (the
netns lab, 2 ranks on each, the veth shaped with tbf), every algorithm on gloo side by side with raw
torch.distributed Gloo over all 4 ranks (flat), float32, 4 KiB to 64 MiB.

Needs root. Writes a markdown table and the records (JSON) to ``--output-dir`` (default .benchmarks/hierarchical).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

ALGOS = ["native", "ring", "rabenseifner", "recursive_doubling", "hierarchical"]
SIZES = ["4K", "64K", "1M", "16M", "64M"]


def bench_rank(algos: list[str], sizes: list[str], warmup: int, iters: int) -> list[dict[str, Any]]:
    """One lab rank (torchrun environment set by the lab): the collective benchmark with --compare torch."""
    from sagellm_comm.benchmark import BenchConfig, run_benchmark

    cfg = BenchConfig(ops=("all_reduce",), backends=("gloo",), algos=tuple(algos), sizes=tuple(sizes),
                      warmup=warmup, iters=iters, check=True, compare="torch", output_dir=None)
    return [r.to_row() for r in run_benchmark(cfg, progress=False).records]


def _table(rows: list[dict[str, Any]], algos: list[str]) -> str:
    by_size: dict[int, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_size.setdefault(r["bytes"], {})[r["algo_id"]] = r
    head = ("| size | " + " | ".join(f"{a} (ms)" for a in algos)
            + " | flat raw gloo (ms) | best | hierarchical vs flat raw |")
    lines = [head, "|" + "---:|" * (len(algos) + 4)]
    for size, cells in sorted(by_size.items()):
        raw = min(c["raw_latency_ms"] for c in cells.values() if c.get("raw_latency_ms"))
        times = {a: cells[a]["latency_ms"] for a in algos if a in cells}
        best = min(times, key=times.get)
        wrong = sum(c.get("wrong") or 0 for c in cells.values())
        hier = times.get("hierarchical")
        ratio = f"{raw / hier:.2f}x" if hier else "-"
        lines.append(f"| {size / 2**10:g} KiB | " + " | ".join(f"{times[a]:.2f}" if a in times else "-" for a in algos)
                     + f" | {raw:.2f} | {best} | {ratio} |" + (f" #wrong {wrong}" if wrong else ""))
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
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from benchmark import hierarchical as me  # the ranks unpickle the task by module name
    from sagellm_comm_lab import netns

    reason = netns.unavailable_reason()
    if reason:
        print(f"benchmark.hierarchical: cannot run: {reason}")
        return 2
    with netns.NetnsLab(2, rate=args.rate, burst=args.burst) as lab:
        rows = lab.run_ranks(me.bench_rank, [0, 0, 1, 1], args.algos, args.sizes, args.warmup, args.iters,
                             timeout=3600, env={"OMP_NUM_THREADS": "1"})[0]
    text = (f"## all_reduce float32, 2 simulated hosts x 2 ranks (netns lab), veth tbf {args.rate} "
            f"(burst {args.burst}), gloo; {args.warmup} warmup + {args.iters} timed iterations, median of the "
            "per-iteration max over ranks; every result checked\n\n" + _table(rows, args.algos))
    print(text)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    (out / f"hierarchical_{stamp}.md").write_text(text)
    (out / f"hierarchical_{stamp}.json").write_text(json.dumps({"rate": args.rate, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
