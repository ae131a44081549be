"""``sagellm-comm trace merge FILES...``: the flight recorders of all ranks side by side (see sagellm_comm.trace)."""

from __future__ import annotations

import json
import sys
from typing import Any

from sagellm_comm.trace import check_dump, merge_traces

__all__ = ["add_trace_parser", "run_trace_merge"]


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "-"
    return f"{entry['signature']} [{entry['state']}{' async' if entry.get('async') else ''}]"


def run_trace_merge(args: Any) -> int:
    dumps = []
    for path in args.files:
        try:
            with open(path) as f:
                dump = json.load(f)
            check_dump(dump, str(path))
        except (OSError, ValueError) as exc:  # InvalidArgumentError is a ValueError: not a dump
            print(f"sagellm-comm trace merge: cannot read {path}: {getattr(exc, 'message', exc)}", file=sys.stderr)
            return 2
        dumps.append(dump)
    ranks, rows = merge_traces(dumps)
    first = next((r for r in rows if r["verdict"] != "ok"), None)
    shown = rows if args.all or len(rows) <= args.last else rows[-args.last :]
    window = "" if shown is rows else f" (the last {len(shown)}; --all for every one)"
    print(f"{len(dumps)} trace(s), ranks {ranks}, {len(rows)} calls{window}")
    for r in shown:
        print(f"{r['group']} #{r['seq']}: {r['verdict']}")
        for rank in ranks:
            print(f"    rank {rank}: {_cell(r['cells'].get(rank))}")
    if first is None:
        print("every rank ran the same calls; none is stuck in the recorded window")
        return 0
    print(f"first divergence: group {first['group']} call #{first['seq']}: {first['verdict']}")
    return 1


def add_trace_parser(sub: Any) -> None:
    p = sub.add_parser("trace", help="flight recorder tools", description="Work with flight-recorder dumps.")
    tsub = p.add_subparsers(dest="trace_command", metavar="ACTION", required=True)
    m = tsub.add_parser(
        "merge",
        help="line up the dumps of all ranks by group and call number",
        description="Line up flight-recorder dumps (one per rank) by group and call number and show "
        "where the ranks part: a call some rank never reached, or one that differs. "
        "Exit 1 when they part, 0 when they agree.",
    )
    m.add_argument("files", nargs="+", help="dump files (written on timeout, or by backend.dump_trace())")
    m.add_argument("--last", type=int, default=40, help="show the last N calls (default 40)")
    m.add_argument("--all", action="store_true", help="show every call")
    m.set_defaults(func=run_trace_merge)
