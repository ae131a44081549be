"""Ours vs raw torch.distributed Gloo, side by side: the table behind this project's performance claims.

    uv run python -m benchmark.compare         # every installed CPU backend, all_reduce, 4K..64M, 2 and 4 ranks
    uv run python -m benchmark.compare --backends gloo --ops all_reduce all_gather broadcast --sizes 4K 64K 1M 16M

For each world size, every backend runs on its own freshly spawned local ranks; on those same processes a raw
``torch.distributed`` Gloo group runs the same op and size, in alternating blocks (ours, gloo, gloo, ours, ...)
so both see the same machine noise. A block is ``calls`` back-to-back calls after a barrier; its time per call
is the max over ranks; the table gives the median over blocks. Iterations are scaled by size (more calls per
block for small messages, fewer blocks for large ones) unless ``--iters``/``--warmup`` say otherwise.

The physical bound is measured in the same run: one thread copying a 256 MiB buffer with torch, counting the
bytes read plus the bytes written. ``busbw`` is nccl-tests' bus bandwidth (all_reduce 2(n-1)/n, all_gather
(n-1)/n, broadcast 1, ...). ``ratio = gloo / ours``: above 1 means ours is faster.

Writes ``compare_<timestamp>.md`` (the table) and ``compare_<timestamp>.json`` (every record) to --output-dir.
The same wrapper-overhead numbers the old ``wrapper_overhead.py`` gave come from ``--backends gloo
--world-sizes 1 2`` (ours is the gloo backend over the same engine, so the ratio is the wrapper's cost).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sagellm_comm.benchmark import (
    BenchConfig,
    BenchRecord,
    CopyBound,
    copy_bandwidth,
    format_size,
    parse_message_size,
    plan_sweep,
    run_sweep,
)
from sagellm_comm.benchmark.export import atomic_write, check_output_dir, versions
from sagellm_comm.benchmark.report import SweepProgress
from sagellm_comm.benchmark.sweep import Plan, pool_sessions
from sagellm_comm.errors import CommError, InvalidArgumentError
from sagellm_comm.launch.pool import MAX_LOCAL_RANKS

DEFAULT_SIZES = ("4K", "16K", "64K", "256K", "1M", "4M", "16M", "64M")
DEFAULT_WORLD_SIZES = (2, 4)
DEFAULT_OUTPUT_DIR = ".benchmarks/compare"
RAW = "gloo"  # the reference engine: plain torch.distributed on a Gloo group
COLUMNS = (
    "op",
    "backend",
    "ranks",
    "size",
    "ours (us)",
    "raw gloo (us)",
    "ratio (gloo/ours)",
    "our busbw (GB/s)",
    "copy bound (GB/s)",
    "busbw % of copy bound",
)


@dataclass(frozen=True)
class Scale:
    blocks: int
    calls: int
    warmup: int


def auto_scale(nbytes: int, iters: int | None = None, warmup: int | None = None) -> Scale:
    """Blocks, calls per block and warmup calls for one size: up to 64 calls per block below 4 MiB, fewer blocks
    above 1 MiB (each call takes milliseconds). A block starts at a barrier and ranks leave a barrier up to
    ~100 us apart on this machine (a sleeping rank's wake-up), so a block of one 25 us call would time the barrier's
    skew, not the op: blocks are made long enough (4 MiB of traffic) for that skew to stay a few percent."""
    calls = max(1, min(64, (4 << 20) // max(nbytes, 1)))
    blocks = iters if iters is not None else (15 if nbytes <= 1 << 20 else 9 if nbytes <= 16 << 20 else 5)
    return Scale(blocks=blocks, calls=calls, warmup=warmup if warmup is not None else max(2, 2 * calls))


def cpu_backends() -> list[str]:
    """Every installed backend that is available here and runs on CPU tensors (from the registry)."""
    from sagellm_comm.registry import list_comm_backends

    return [b.name for b in list_comm_backends() if b.available and "cpu" in b.devices]


def scaled(plan: Plan, iters: int | None, warmup: int | None) -> Plan:
    units = []
    for unit in plan.units:
        s = auto_scale(unit.spec.plan.nbytes, iters, warmup)
        units.append(replace(unit, spec=replace(unit.spec, iters=s.blocks, calls=s.calls, warmup=s.warmup)))
    return replace(plan, units=units)


def plan_for(
    world_size: int,
    backends: Sequence[str],
    ops: Sequence[str],
    sizes: Sequence[Any],
    algo: str,
    iters: int | None,
    warmup: int | None,
) -> Plan:
    cfg = BenchConfig(
        ops=tuple(ops),
        backends=tuple(backends),
        algos=(algo,),
        sizes=tuple(sizes),
        compare="torch",
        raw_backend=RAW,
        output_dir=None,
    )
    return scaled(plan_sweep(cfg, world_size), iters, warmup)


def table_rows(records: Sequence[BenchRecord], bound: CopyBound) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        pct = 100.0 * r.bus_bandwidth_gbps / bound.gbps if bound.gbps > 0 else None
        rows.append(
            {
                "op": r.op_type,
                "backend": f"{r.backend_kind}/{r.algo_id}" if r.algo_id != "native" else r.backend_kind,
                "ranks": r.world_size,
                "size": format_size(r.bytes),
                "bytes": r.bytes,
                "ours_us": r.latency_ms * 1e3,
                "raw_gloo_us": None if r.raw_latency_ms is None else r.raw_latency_ms * 1e3,
                "ratio": r.speedup_vs_raw,
                "busbw_gbps": r.bus_bandwidth_gbps,
                "copy_bound_gbps": bound.gbps,
                "busbw_pct_of_copy": pct,
            }
        )
    return rows


def _cell(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(rows: Sequence[dict[str, Any]], bound: CopyBound, header: dict[str, Any]) -> str:
    lines = [
        f"# sagellm-comm vs raw torch.distributed Gloo ({header['started']})",
        "",
        f"Host: {header['cpu_count']} CPU(s); torch {header['versions']['torch']}, sagellm_comm "
        f"{header['versions']['sagellm_comm']}. Backends: {', '.join(header['backends'])}; world sizes "
        f"{', '.join(map(str, header['world_sizes']))}; float32.",
        "",
        "Method: ours and raw Gloo run on the same rank processes in alternating blocks (a barrier, one untimed "
        "lead-in call, then back-to-back timed calls); per-call time of a block is the max over ranks; the table "
        "shows the median over blocks. "
        "busbw = S / time x nccl-tests' factor. ratio = raw gloo / ours (>1: ours is faster).",
        f"Copy bound: one thread copying a {format_size(bound.nbytes)} buffer with torch, median of {bound.repeats}, "
        f"counted as {bound.counted}: {bound.gbps:.2f} GB/s.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * (len(COLUMNS) - 3)) + "|",
    ]
    for r in rows:
        cells = [
            r["op"],
            r["backend"],
            str(r["ranks"]),
            r["size"],
            _cell(r["ours_us"], ".1f"),
            _cell(r["raw_gloo_us"], ".1f"),
            _cell(r["ratio"], ".2f"),
            _cell(r["busbw_gbps"], ".3f"),
            _cell(r["copy_bound_gbps"], ".2f"),
            _cell(r["busbw_pct_of_copy"], ".1f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    from sagellm_comm.cli.main import _Parser

    p = _Parser(prog="python -m benchmark.compare", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument(
        "--backends",
        nargs="+",
        metavar="NAME",
        help="backends to compare with raw Gloo (default: every installed, available CPU backend)",
    )
    p.add_argument(
        "--ops",
        nargs="+",
        default=["all_reduce"],
        metavar="OP",
        help="collectives (default all_reduce): all_reduce, all_gather, reduce_scatter, broadcast, reduce, "
        "all_to_all, sendrecv",
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        default=list(DEFAULT_SIZES),
        metavar="SIZE",
        help="message sizes S (default 4K 16K 64K 256K 1M 4M 16M 64M); a bare number is a float32 element count",
    )
    p.add_argument(
        "--world-sizes",
        nargs="+",
        type=int,
        default=list(DEFAULT_WORLD_SIZES),
        metavar="N",
        help="local rank counts (default 2 4)",
    )
    p.add_argument("--algo", default="native", help="algorithm for ours (default native: the backend's own)")
    p.add_argument("--iters", type=int, help="timed blocks per size (default: 15 up to 1 MiB, 9 up to 16 MiB, 5 above)")
    p.add_argument("--warmup", type=int, help="untimed calls per engine and size (default: 2 blocks' worth)")
    p.add_argument(
        "--output-dir", default=DEFAULT_OUTPUT_DIR, help=f"where the table goes (default {DEFAULT_OUTPUT_DIR})"
    )
    return p


def _validate(args: argparse.Namespace, p: argparse.ArgumentParser) -> tuple[list[str], list[Plan]]:
    for ws in args.world_sizes:
        if not 1 <= ws <= MAX_LOCAL_RANKS:
            p.error(f"--world-sizes values must be in 1..{MAX_LOCAL_RANKS}, got {ws}")
    if args.iters is not None and args.iters < 1:
        p.error(f"--iters must be >= 1, got {args.iters}")
    if args.warmup is not None and args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    try:
        sizes = [parse_message_size(s) for s in args.sizes]
    except ValueError as exc:
        p.error(str(exc))
    installed = cpu_backends()
    backends = list(dict.fromkeys(args.backends or installed))
    if not backends:
        p.error("no available CPU backend is installed (pip install 'isagellm-comm[gloo]')")
    not_cpu = [b for b in backends if b not in installed]
    try:
        if not_cpu:
            from sagellm_comm.registry import get_comm_backend

            get_comm_backend(not_cpu[0])  # unknown or unavailable: its own error
            raise InvalidArgumentError(
                f"backend {not_cpu[0]!r} does not run on CPU tensors; this suite compares CPU "
                f"backends with raw Gloo (available CPU backends: {', '.join(installed)})"
            )
        plans = [
            plan_for(ws, backends, args.ops, sizes, args.algo, args.iters, args.warmup)
            for ws in dict.fromkeys(args.world_sizes)
        ]
        check_output_dir(args.output_dir)
    except CommError as exc:
        p.error(str(exc))
    return backends, plans


def main(argv: Sequence[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    backends, plans = _validate(args, p)
    started = datetime.now()
    for plan in plans:
        for note in plan.notes:
            print(f"note: {note}", file=sys.stderr)
    print("measuring the single-thread copy bound ...", file=sys.stderr, flush=True)
    bound = copy_bandwidth()
    records: list[BenchRecord] = []
    total = sum(len(plan.units) for plan in plans)
    try:
        with SweepProgress(total) as bar:
            for plan in plans:
                records += run_sweep(plan, pool_sessions(plan), progress=bar, stamp=started)
    except CommError as exc:
        print(f"{p.prog}: error: benchmark failed: {exc.message.splitlines()[0]}", file=sys.stderr)
        return 1
    rows = table_rows(records, bound)
    header = {
        "started": started.astimezone().isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "versions": versions(),
        "backends": backends,
        "world_sizes": [plan.world_size for plan in plans],
        "ops": list(plans[0].config.ops),
        "copy_bound": bound.__dict__,
    }
    text = markdown(rows, bound, header)
    stem = f"compare_{started.strftime('%Y%m%d_%H%M%S')}"
    folder = Path(args.output_dir)
    doc = {**header, "rows": rows, "records": [r.to_row() for r in records]}
    json_path = atomic_write(folder / f"{stem}.json", lambda f: f.write(json.dumps(doc, indent=2) + "\n"))
    md_path = atomic_write(folder / f"{stem}.md", lambda f: f.write(text))
    print(text)
    print(f"wrote {md_path}\nwrote {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
