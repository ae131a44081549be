"""``sagellm-comm``: ``info``, ``doctor``, ``bench``, ``topology`` and ``trace`` subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from sagellm_comm._version import __version__
from sagellm_comm.cli.bench import add_bench_parser
from sagellm_comm.cli.doctor import add_doctor_parser
from sagellm_comm.cli.info import add_info_parser
from sagellm_comm.cli.topology import add_topology_parser
from sagellm_comm.cli.trace import add_trace_parser

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sagellm-comm", description="sageLLM communication layer tools.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_info_parser(sub)
    add_doctor_parser(sub)
    add_bench_parser(sub)
    add_topology_parser(sub)
    add_trace_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
