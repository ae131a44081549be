"""``python -m sagellm_comm.benchmark.run_overlap_bench``: the seed's overlap benchmark (docs/overlap.md).

Standalone it launches ``--nproc`` local ranks (default 2); under torchrun this process is one rank. Writes
``overlap_<op>_ws<N>_<timestamp>.json`` and ``.csv`` to ``--output-dir`` and prints a summary table.

Exit codes: 0 done; 1 the run failed; 2 bad input (one line on stderr, nothing started, nothing written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.text import Text

from sagellm_comm.benchmark.metrics import parse_size
from sagellm_comm.benchmark.overlap import DEFAULT_OVERLAP_OUTPUT_DIR, OverlapConfig, run_overlap, validate
from sagellm_comm.benchmark.overlap_rank import OVERLAP_OPS
from sagellm_comm.benchmark.report import overlap_table
from sagellm_comm.errors import CommError

__all__ = ["main", "parser"]

PROG = "python -m sagellm_comm.benchmark.run_overlap_bench"
DEFAULT_COMM_BYTES = ("1M", "4M", "16M")
DEFAULT_COMPUTE_MS = (5.0, 20.0, 50.0)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: milliseconds, e.g. 10 or 2.5") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be > 0 ms")
    return value


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    from sagellm_comm.cli.main import _Parser

    p = _Parser(
        prog=prog,
        description="How much of a collective hides behind real compute: communication alone, "
        "compute alone (matmuls calibrated to each duration) and both overlapped, measured in one run; "
        "overlap_efficiency and overlap_ratio as defined in docs/overlap.md.",
    )
    p.add_argument(
        "--comm-bytes",
        nargs="+",
        type=_size,
        default=None,
        metavar="SIZE",
        help=f"bytes each rank communicates (4096, 64K, 1M; default {' '.join(DEFAULT_COMM_BYTES)})",
    )
    p.add_argument(
        "--compute-ms",
        nargs="+",
        type=_ms,
        default=None,
        metavar="MS",
        help="compute durations in milliseconds (default 5 20 50)",
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations per cell (default 5)")
    p.add_argument("--iters", type=int, default=10, help="timed iterations per cell (default 10)")
    p.add_argument(
        "--output-dir",
        default=DEFAULT_OVERLAP_OUTPUT_DIR,
        help=f"where the JSON and CSV go (default {DEFAULT_OVERLAP_OUTPUT_DIR})",
    )
    p.add_argument("--backend", default="auto", help="backend name (default auto)")
    p.add_argument("--op", choices=OVERLAP_OPS, default="all_reduce", help="the collective (default all_reduce)")
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="local ranks to launch (default 2; 1 = a world of one); under torchrun it comes from torchrun",
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    p = parser(prog)
    args = p.parse_args(argv)
    cfg = OverlapConfig(
        comm_bytes=tuple(args.comm_bytes or (parse_size(s) for s in DEFAULT_COMM_BYTES)),
        compute_ms=tuple(args.compute_ms or DEFAULT_COMPUTE_MS),
        op=args.op,
        backend=args.backend,
        warmup=args.warmup,
        iters=args.iters,
        nproc=args.nproc,
        output_dir=args.output_dir,
    )
    try:
        cfg = validate(cfg)
    except CommError as exc:
        p.error(str(exc))
    try:
        result = run_overlap(cfg)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except CommError as exc:
        print(f"{prog}: error: benchmark failed: {' '.join(exc.message.split())}", file=sys.stderr)
        return 1
    if result.rank != 0:
        return 0
    from sagellm_comm.cli._console import make_console

    console = make_console()
    info = result.info
    console.print(
        Text(
            f"{cfg.op} on {info['world_size']} rank(s), backend {info['backend']}, device {info['device']}; "
            f"compute: {info['matmul_size']}x{info['matmul_size']} float32 matmuls "
            f"({info['seconds_per_matmul'] * 1e3:.3f} ms each on rank 0, "
            f"{info['torch_threads']} thread(s)); "
            f"{cfg.warmup} warmup + {cfg.iters} timed iterations per cell"
        ),
        soft_wrap=True,
    )
    console.print(overlap_table(result.records))
    console.print(
        Text(
            "times in ms: per iteration the max over ranks, then the median; sequential = comm alone + "
            "compute alone, ideal = max of the two (both measured in this run); efficiency = "
            "(sequential - total) / (sequential - ideal); hidden = share of the communication time "
            "hidden"
        ),
        soft_wrap=True,
    )
    for path in result.paths:
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
