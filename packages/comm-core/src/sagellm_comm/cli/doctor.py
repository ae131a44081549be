"""``sagellm-comm doctor``: check the local setup and print findings with fixes (exit 1 if any check fails)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from rich.table import Table
from rich.text import Text

from sagellm_comm.cli._console import make_console
from sagellm_comm.doctor import CHECKS, FAIL, INFO, OK, WARN, Context, Finding, counts, exit_code, run_checks

__all__ = ["add_doctor_parser", "render_doctor", "run_doctor"]

_STYLE = {OK: "green", INFO: "cyan", WARN: "yellow", FAIL: "bold red"}


def render_doctor(findings: list[Finding], quiet: bool = False) -> None:
    console = make_console()
    shown = [f for f in findings if not quiet or f.level in (WARN, FAIL)]
    table = Table(title="sagellm-comm doctor", title_justify="left")
    table.add_column("level")
    table.add_column("check")
    table.add_column("found", overflow="fold", ratio=3)
    table.add_column("fix", overflow="fold", ratio=2)
    for f in shown:
        table.add_row(Text(f.level, style=_STYLE[f.level]), Text(f.check), Text(f.found), Text(f.fix))
    if shown:
        console.print(table)
    c = counts(findings)
    summary = ", ".join(f"{c[level]} {level}" for level in (FAIL, WARN, INFO, OK))
    verdict = "problems found" if c[FAIL] else "no failures" + (" (see the warnings)" if c[WARN] else "")
    console.print(
        Text(f"{summary}: {verdict}", style=_STYLE[FAIL] if c[FAIL] else _STYLE[WARN] if c[WARN] else _STYLE[OK]),
        soft_wrap=True,
    )


def run_doctor(args: argparse.Namespace) -> int:
    ctx = Context(ranks=args.ranks, stale_after_s=args.stale_after)
    findings = run_checks(ctx, only=args.check or None)
    code = exit_code(findings)
    if args.json:
        data: dict[str, Any] = {
            "findings": [asdict(f) for f in findings],
            "counts": counts(findings),
            "exit_code": code,
        }
        print(json.dumps(data, indent=2))
    else:
        render_doctor(findings, quiet=args.quiet)
    return code


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def add_doctor_parser(sub: Any) -> None:
    width = max(map(len, CHECKS))
    listing = "\n".join(f"  {name:<{width}}  {what}" for name, (_, what) in CHECKS.items())
    p = sub.add_parser(
        "doctor",
        help="check the local setup (shm, limits, interfaces, env vars, ports, backends) and print fixes",
        description="Check the local setup and print each finding (ok, info, warn, fail) with its fix.\n"
        "Exit status 1 when any check fails; warnings do not fail.",
        epilog="checks:\n" + listing,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument(
        "--check",
        action="append",
        choices=list(CHECKS),
        metavar="NAME",
        help="run only this check (repeatable): " + ", ".join(CHECKS),
    )
    p.add_argument(
        "--ranks",
        type=_positive_int,
        default=None,
        metavar="N",
        help="ranks per host to size /dev/shm and threads for (default: LOCAL_WORLD_SIZE, else 8)",
    )
    p.add_argument(
        "--stale-after",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="region files in /dev/shm older than this are leftovers of crashed jobs (default 600)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="show only warnings and failures (not with --json)")
    p.set_defaults(func=run_doctor)
