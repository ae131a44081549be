"""``sagellm-comm topology``: this machine's topology as a tree, JSON, a picture, with measured links.

The core shows the host-only view; a topology plugin (isagellm-comm-topology) answers the topology hooks with the
full tree, ``--render`` and ``--profile``. Nothing here imports a plugin.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Any

from rich.text import Text
from rich.tree import Tree

from sagellm_comm.cli._console import make_console
from sagellm_comm.errors import CommError

__all__ = ["add_topology_parser", "run_topology"]

PLUGIN_HINT = "install the topology plugin: pip install 'isagellm-comm[topology]'"


class _NoPlugin(Exception):
    pass


def _core_tree(topo: Any) -> Tree:
    head = Text(topo.hostname, style="bold")
    head.append(f"  node {topo.node_id}", style="dim")
    t = Tree(head)
    t.add(Text(f"CPU: {topo.cpu_count} logical CPU(s)"))
    if topo.devices:
        dt = t.add(Text(f"accelerators ({len(topo.devices)})"))
        for d in topo.devices:
            dt.add(Text(f"{d.kind}:{d.index} {d.name}"))
    else:
        t.add(Text(f"no GPU/NPU: {topo.accelerator_reason}", style="yellow"))
    for note in topo.notes:
        t.add(Text(note, style="dim"))
    return t


def _hook(name: str, **kwargs: Any) -> Any:
    from sagellm_comm.registry import plugin_manager

    found = plugin_manager().call_first(name, isolate=False, **kwargs)
    if found is None:
        raise _NoPlugin(name)
    return found[1]


def _json_data(topo: Any) -> dict[str, Any]:
    desc = topo.to_descriptor().model_dump(mode="json")
    desc["metadata"].pop("facts", None)  # already under "topology"
    return {"topology": topo.to_dict(), "descriptor": desc}


def run_topology(args: argparse.Namespace) -> int:
    from sagellm_comm.topology import TOPOLOGY_FILE_ENV, Topology

    if args.from_file:
        if not os.path.isfile(args.from_file):
            print(f"sagellm-comm topology: error: no such file: {args.from_file}", file=sys.stderr)
            return 2
        os.environ[TOPOLOGY_FILE_ENV] = args.from_file
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # failed plugins are listed by `sagellm-comm info`
            topo = Topology.discover()
        if args.profile:
            _hook(
                "sagellm_comm_topology_profile",
                topology=topo,
                backend=args.backend,
                world_size=args.ranks,
                budget_s=args.budget,
            )
        rendered = _hook("sagellm_comm_topology_render", topology=topo, path=args.render) if args.render else None
    except _NoPlugin as exc:
        what = "--profile" if "profile" in str(exc) else "--render"
        print(f"sagellm-comm topology: error: {what} needs a topology plugin; {PLUGIN_HINT}", file=sys.stderr)
        return 2
    except CommError as exc:
        print(f"sagellm-comm topology: error: {' '.join(exc.message.split())[:2000]}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"sagellm-comm topology: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_json_data(topo), indent=2))
    else:
        console = make_console()
        try:
            tree = _hook("sagellm_comm_topology_tree", topology=topo)
        except _NoPlugin:
            tree = _core_tree(topo)
        console.print(tree)
        if rendered:
            console.print(f"picture written to {rendered}")
    return 0


def add_topology_parser(sub: Any) -> None:
    p = sub.add_parser(
        "topology",
        help="show this machine's topology (tree, JSON, picture) and measure its links",
        description="Show nodes > sockets > NUMA nodes > devices, NICs and links with their speeds. The host-only "
        "view comes from the core; the topology plugin adds the rest, --render and --profile.",
    )
    p.add_argument("--json", action="store_true", help="print the topology and its protocol descriptor as JSON")
    p.add_argument("--render", metavar="FILE", help="draw the topology into FILE (.png or .svg)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="measure latency and bandwidth between local ranks (cached per topology fingerprint)",
    )
    p.add_argument("--ranks", type=int, default=2, metavar="N", help="ranks to launch for --profile (default 2)")
    p.add_argument("--backend", default=None, help="backend for --profile (default: auto)")
    p.add_argument(
        "--budget", type=float, default=8.0, metavar="S", help="time budget of the measurement in seconds (default 8)"
    )
    p.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help=f"show a pinned/replayed topology JSON instead of discovering (same as {_env_name()}=FILE)",
    )
    p.set_defaults(func=run_topology)


def _env_name() -> str:
    from sagellm_comm.topology import TOPOLOGY_FILE_ENV

    return TOPOLOGY_FILE_ENV
