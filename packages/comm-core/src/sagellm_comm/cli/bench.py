"""``sagellm-comm bench``: all_reduce latency and bandwidth over a size sweep on local ranks, side by side
with raw ``torch.distributed`` on a Gloo group."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any

from rich.table import Table
from rich.text import Text

from sagellm_comm.benchmark import (
    COMPARE_CHOICES,
    DEFAULT_SIZES,
    RAW_TORCH_BACKEND,
    AllReduceConfig,
    AllReduceRecord,
    format_size,
    parse_size,
    sweep_all_reduce,
    validate_all_reduce_config,
)
from sagellm_comm.cli._console import make_console
from sagellm_comm.errors import CommError
from sagellm_comm.launch.pool import MAX_LOCAL_RANKS

__all__ = ["add_bench_parser", "render_records", "run_bench"]

MAX_NPROC = MAX_LOCAL_RANKS


def _size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_records(records: list[AllReduceRecord], cfg: AllReduceConfig) -> None:
    console = make_console()
    compare = cfg.compare == "torch"
    n = records[0].world_size if records else cfg.nproc
    title = (
        f"all_reduce (sum, {cfg.dtype}) on {n} local rank(s), backend {cfg.backend}: "
        f"{cfg.warmup} warmup + {cfg.iters} timed iterations per size"
        + (f"; raw = torch.distributed/{RAW_TORCH_BACKEND}, interleaved" if compare else "")
    )
    console.print(Text(title), soft_wrap=True)
    table = Table()
    right = {"justify": "right", "no_wrap": True}
    table.add_column("size (B)", **right)
    table.add_column("size", **right)
    table.add_column("backend", no_wrap=True)
    table.add_column("median (us)", **right)
    table.add_column("p99 (us)", **right)
    table.add_column("algbw (GB/s)", **right)
    table.add_column("busbw (GB/s)", **right)
    if compare:
        table.add_column("raw median (us)", **right)
        table.add_column("ours/raw", **right)
        table.add_column("overhead (us)", **right)
    for r in records:
        row = [
            str(r.size_bytes),
            format_size(r.size_bytes),
            r.backend,
            f"{r.median_us:.1f}",
            f"{r.p99_us:.1f}",
            f"{r.algbw_gbps:.3f}",
            f"{r.busbw_gbps:.3f}",
        ]
        if compare:
            row += [_fmt(r.raw_median_us, ".1f"), _fmt(r.ratio, ".2f"), _fmt(r.overhead_us, "+.1f")]
        table.add_row(*(Text(c) for c in row))
    console.print(table)
    console.print(
        Text(
            "latency: per iteration the max over ranks, then median/p99 over iterations; "
            "algbw = bytes / median (GB = 1e9 B); busbw = algbw * 2(n-1)/n"
            + ("; overhead = ours - raw median" if compare else "")
        ),
        soft_wrap=True,
    )


def _write_json(path: str, cfg: AllReduceConfig, records: list[AllReduceRecord]) -> None:
    import torch

    from sagellm_comm import __version__

    doc: dict[str, Any] = {
        "benchmark": "all_reduce",
        "config": {
            "nproc": cfg.nproc,
            "backend": cfg.backend,
            "sizes": list(cfg.sizes),
            "dtype": cfg.dtype,
            "warmup": cfg.warmup,
            "iters": cfg.iters,
            "compare": cfg.compare,
        },
        "versions": {
            "sagellm_comm": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "records": [r.to_dict() for r in records],
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def run_bench(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if not 1 <= args.nproc <= MAX_NPROC:
        parser.error(f"--nproc must be in 1..{MAX_NPROC}, got {args.nproc}")
    if args.iters < 1:
        parser.error(f"--iters must be >= 1, got {args.iters}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    try:
        cfg = validate_all_reduce_config(
            AllReduceConfig(
                nproc=args.nproc,
                backend=args.backend,
                sizes=tuple(args.sizes),
                dtype=args.dtype,
                warmup=args.warmup,
                iters=args.iters,
                compare=args.compare,
            )
        )
    except CommError as exc:
        parser.error(str(exc))
    if args.json:  # fail now, not after the sweep
        folder = os.path.dirname(os.path.abspath(args.json))
        if os.path.isdir(args.json) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            parser.error(f"cannot write --json {args.json}: not a writable file path")

    def progress(i: int, total: int, rec: AllReduceRecord) -> None:
        raw = f", raw {rec.raw_median_us:.1f} us" if rec.raw_median_us is not None else ""
        print(
            f"[{i + 1}/{total}] {format_size(rec.size_bytes)}: median {rec.median_us:.1f} us{raw}",
            file=sys.stderr,
            flush=True,
        )

    print(
        f"sagellm-comm bench: all_reduce on {cfg.nproc} rank(s), backend {cfg.backend}, "
        f"{len(cfg.sizes)} size(s)...",
        file=sys.stderr,
        flush=True,
    )
    try:
        records = sweep_all_reduce(cfg, on_result=progress)
    except CommError as exc:
        print(f"{parser.prog}: error: benchmark failed: {exc.message}", file=sys.stderr)
        return 1
    render_records(records, cfg)
    if args.json:
        _write_json(args.json, cfg, records)
        print(f"wrote {len(records)} record(s) to {args.json}", file=sys.stderr)
    return 0


def add_bench_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="all_reduce latency/bandwidth sweep on local ranks (vs raw torch.distributed)",
        description="Launch --nproc local ranks, run all_reduce(sum) over a size sweep with the chosen "
        "backend and, interleaved on the same ranks, with raw torch.distributed on a Gloo group; print "
        "median/p99 latency and nccl-tests algbw/busbw per size.",
    )
    p.add_argument("--nproc", type=int, default=2, help="number of local ranks (1..64, default 2)")
    p.add_argument("--backend", default="auto", help="backend name, or auto (default)")
    p.add_argument(
        "--sizes",
        nargs="+",
        type=_size_arg,
        default=list(DEFAULT_SIZES),
        metavar="SIZE",
        help="buffer sizes per rank: bytes or K/M/G (binary), e.g. 4K 64K 1M 16M (the default)",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        help="element type (default float32): float32, float16, bfloat16, float64, int8, uint8, int32, int64",
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations per size (default 5)")
    p.add_argument("--iters", type=int, default=50, help="timed iterations per size (default 50)")
    p.add_argument(
        "--compare",
        choices=COMPARE_CHOICES,
        default="torch",
        help="also time raw torch.distributed (Gloo) interleaved with ours (default torch; none: off)",
    )
    p.add_argument(
        "--json", metavar="PATH", help="also write the records (CommOperationMetrics + extras) as JSON"
    )
    p.set_defaults(func=run_bench, parser=p)
