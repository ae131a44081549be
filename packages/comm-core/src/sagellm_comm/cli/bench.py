"""``sagellm-comm bench`` (and ``python -m benchmark.run_bench``, the same parser): nccl-tests-style collective
benchmarks on local ranks (``--nproc``) or under torchrun, with ``bench plot FILE...`` to chart result files.

Exit codes: 0 done; 1 the run failed or ``--check`` found wrong elements; 2 bad input (one line on stderr,
nothing started, nothing written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from rich.text import Text

from sagellm_comm.algorithms import AUTO, OPS
from sagellm_comm.benchmark import (
    COMPARE_CHOICES,
    DEFAULT_MESSAGE_SIZES,
    DEFAULT_OUTPUT_DIR,
    BenchConfig,
    BenchResult,
    Prepared,
    execute,
    in_torchrun,
    parse_message_size,
    prepare,
)
from sagellm_comm.benchmark.report import summary_table
from sagellm_comm.cli._console import make_console
from sagellm_comm.errors import CommError
from sagellm_comm.launch.pool import MAX_LOCAL_RANKS

__all__ = [
    "DEFAULT_NPROC",
    "add_bench_arguments",
    "add_bench_parser",
    "main",
    "run_bench",
    "run_plot",
    "standalone_parser",
]

DEFAULT_NPROC = 2


def _size_arg(text: str) -> Any:
    try:
        return parse_message_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _split(values: Sequence[str] | None) -> tuple[str, ...]:
    """``--ops a b`` and ``--ops a,b`` alike."""
    return tuple(v for item in values or () for v in item.split(",") if v)


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """The options of a collective benchmark run (shared by both command names)."""
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        help=f"local ranks to launch (1..{MAX_LOCAL_RANKS}; default {DEFAULT_NPROC}); under torchrun the "
        "world size comes from torchrun",
    )
    p.add_argument(
        "--backend",
        nargs="+",
        default=[AUTO],
        metavar="NAME",
        help="backend(s) to measure (default auto: the best available); several run one after another",
    )
    p.add_argument(
        "--algo",
        nargs="+",
        default=[AUTO],
        metavar="ALGO",
        help="algorithm(s): auto (selector config, then plugins, then native), native, ring, tree, "
        "recursive_doubling, rabenseifner, hierarchical; several are measured side by side",
    )
    p.add_argument(
        "--ops",
        nargs="+",
        default=["all_reduce"],
        metavar="OP",
        help=f"collectives to measure (default all_reduce): {', '.join(OPS)}",
    )
    p.add_argument(
        "--message-sizes",
        "--sizes",
        dest="sizes",
        nargs="+",
        type=_size_arg,
        default=list(DEFAULT_MESSAGE_SIZES),
        metavar="SIZE",
        help="message sizes S: a bare number is an element count (1024 = 4 KiB of float32), a number "
        "with a unit is bytes (4K, 64KiB, 1M); default 4K 64K 1M 16M",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        help="element type (default float32): float32, float16, bfloat16, float64, int8, uint8, int32, int64",
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations per size (default 5)")
    p.add_argument("--iters", type=int, default=50, help="timed iterations per size (default 50)")
    p.add_argument(
        "--selector-config",
        metavar="FILE",
        help="JSON rules mapping op/size/world size/backend to an algorithm for --algo auto "
        "(schema: docs/benchmark.md)",
    )
    p.add_argument(
        "--output-dir",
        default=DEFAULT_OUTPUT_DIR,
        help=f"where <op>_ws<N>_<timestamp>.json/.csv go (default {DEFAULT_OUTPUT_DIR})",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="verify each result against a locally computed reference first (nccl-tests' #wrong); "
        "exit 1 if any element is wrong",
    )
    p.add_argument(
        "--compare",
        choices=COMPARE_CHOICES,
        default="none",
        help="torch: also time raw torch.distributed (the engine the backend wraps, else Gloo) on the "
        "same ranks, interleaved, and report raw time and speedup (default none)",
    )
    p.add_argument("--root", type=int, default=0, help="root rank of broadcast and reduce (default 0)")
    p.add_argument(
        "--plot",
        action="store_true",
        help="also write a PNG per op (time and busbw vs size, log-log; needs matplotlib)",
    )


def _config(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(
        ops=_split(args.ops),
        backends=_split(args.backend),
        algos=_split(args.algo),
        sizes=tuple(args.sizes),
        dtype=args.dtype,
        warmup=args.warmup,
        iters=args.iters,
        check=args.check,
        compare=args.compare,
        selector_config=args.selector_config,
        output_dir=args.output_dir,
        root=args.root,
    )


def _header(prepared: Prepared) -> str:
    plan = prepared.plan
    cfg = plan.config
    where = f"{plan.world_size} local rank(s)" if prepared.spawn else f"{plan.world_size} rank(s) (this is rank 0)"
    return (
        f"{', '.join(cfg.ops)} on {where}, backend {', '.join(plan.backends)}, {cfg.dtype}: {cfg.warmup} warmup "
        f"+ {cfg.iters} timed iterations per size"
        + ("; checked" if cfg.check else "")
        + ("; raw torch.distributed interleaved" if cfg.compare == "torch" else "")
    )


def _report(result: BenchResult, prepared: Prepared) -> None:
    console = make_console()
    console.print(Text(_header(prepared)), soft_wrap=True)
    console.print(summary_table(result.records))
    console.print(
        Text(
            "time: per iteration the max over ranks, then the median (p99) over iterations; "
            "algbw = S / time (GB = 1e9 B); busbw = algbw x nccl-tests' factor for the op"
            + ("; speedup = raw time / our time (>1: ours faster)" if prepared.plan.config.compare == "torch" else "")
        ),
        soft_wrap=True,
    )


def _err(prog: str, text: str) -> None:
    print(f"{prog}: error: {' '.join(text.split())}", file=sys.stderr, flush=True)


def run_bench(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if args.nproc is not None and not 1 <= args.nproc <= MAX_LOCAL_RANKS:
        parser.error(f"--nproc must be in 1..{MAX_LOCAL_RANKS} (local ranks), got {args.nproc}")
    if args.iters < 1:
        parser.error(f"--iters must be >= 1, got {args.iters}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    nproc = args.nproc if args.nproc is not None or in_torchrun() else DEFAULT_NPROC
    try:
        prepared = prepare(_config(args), nproc, plot=args.plot)
    except CommError as exc:
        parser.error(str(exc))
    if prepared.reporter:
        for note in prepared.plan.notes:
            print(f"note: {note}", file=sys.stderr)
        print(f"{parser.prog}: {_header(prepared)} ...", file=sys.stderr, flush=True)
    notify = (lambda line: print(line, file=sys.stderr)) if prepared.reporter else None
    try:
        result = execute(prepared, notify=notify)
    except CommError as exc:
        _err(parser.prog, f"benchmark failed: {exc.message.splitlines()[0]}")
        return 1
    if not prepared.reporter:
        return 1 if result.wrong else 0
    _report(result, prepared)
    if result.wrong:
        _err(parser.prog, f"--check found {result.wrong} wrong element(s); see the #wrong column")
        return 1
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from sagellm_comm.benchmark.plot import plot_files

    try:
        path = plot_files(args.files, args.output)
    except CommError as exc:
        args.parser.error(str(exc))
    print(path)
    return 0


def _add_plot_parser(sub: Any) -> None:
    p = sub.add_parser(
        "plot",
        help="chart result files: time and busbw vs size, one line per backend/algorithm",
        description="Draw one or several result files (.json or .csv from a bench run) into one PNG: "
        "time per op and bus bandwidth against message size, log-log, one line per "
        "backend/algorithm (dashed: raw torch.distributed), one row per op.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="result files (.json or .csv)")
    p.add_argument("-o", "--output", metavar="PNG", help="output file (default: next to the first file)")
    p.set_defaults(func=run_plot, parser=p)


_DESCRIPTION = (
    "Measure collectives the way nccl-tests does (time per op, algbw, busbw, #wrong) on --nproc local "
    "ranks, or on the ranks torchrun started; write <op>_ws<N>_<timestamp>.json and .csv to "
    "--output-dir. `bench plot FILE...` charts result files."
)


def add_bench_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="collective benchmarks (nccl-tests metrics) on local ranks or under torchrun; "
        "`bench plot FILE...` charts results",
        description=_DESCRIPTION,
    )
    add_bench_arguments(p)
    _add_plot_parser(p.add_subparsers(dest="bench_command", metavar="plot", required=False))
    p.set_defaults(func=run_bench, parser=p)


def standalone_parser(prog: str) -> argparse.ArgumentParser:
    """The same command as its own program (``python -m benchmark.run_bench``)."""
    from sagellm_comm.cli.main import _Parser

    p = _Parser(prog=prog, description=_DESCRIPTION)
    add_bench_arguments(p)
    _add_plot_parser(p.add_subparsers(dest="bench_command", metavar="plot", required=False))
    p.set_defaults(func=run_bench, parser=p)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "run_bench") -> int:
    args = standalone_parser(prog).parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
