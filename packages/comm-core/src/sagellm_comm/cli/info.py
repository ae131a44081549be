"""``sagellm-comm info``: versions, plugin load records and backend availability."""

from __future__ import annotations

import argparse
import json
import platform
import warnings
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from rich.table import Table
from rich.text import Text

from sagellm_comm.cli._console import make_console

__all__ = ["add_info_parser", "collect_info", "run_info"]

_STATUS_STYLE = {"loaded": "green", "failed": "bold red", "disabled": "yellow", "incompatible": "bold magenta"}
_NOT_LOADED = ("failed", "incompatible")  # statuses whose error is shown in red and again in full below


def _dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def collect_info() -> dict[str, Any]:
    """Everything ``info`` shows, as plain data (what ``info --json`` prints)."""
    import torch

    from sagellm_comm import __version__
    from sagellm_comm.plugins import PLUGIN_API_VERSION
    from sagellm_comm.registry import list_comm_backends, plugin_manager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # failed plugins are reported in the tables, not as warnings
        records = list(plugin_manager().records.values())
        backends = list_comm_backends()
    versions = {
        "sagellm_comm": __version__,
        "isagellm-comm-core": _dist_version("isagellm-comm-core"),
        "plugin API": PLUGIN_API_VERSION,
        "isagellm-protocol": _dist_version("isagellm-protocol"),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    plugins = [asdict(r) for r in records]
    backend_rows = [
        {
            "name": b.name,
            "available": b.available,
            "reason": b.reason,
            "devices": list(b.devices),
            "priority": b.priority,
            "plugin": b.plugin,
            "description": b.description,
        }
        for b in backends
    ]
    from sagellm_comm.errors import CommError
    from sagellm_comm.registry import select_backend

    auto: dict[str, str | None]
    try:
        name, why = select_backend("cpu")
        auto = {"device": "cpu", "backend": name, "reason": why}
    except CommError as exc:
        auto = {"device": "cpu", "backend": None, "reason": exc.message}
    return {"versions": versions, "plugins": plugins, "backends": backend_rows, "auto": auto}


def _cell(value: Any, style: str = "") -> Text:
    return Text("" if value is None else str(value), style=style)


def render_info(data: dict[str, Any]) -> None:
    console = make_console()
    vt = Table(title="sagellm-comm versions", title_justify="left")
    vt.add_column("component")
    vt.add_column("version", overflow="fold")
    for k, v in data["versions"].items():
        vt.add_row(_cell(k), _cell(v))
    console.print(vt)

    pt = Table(title="plugins (entry-point group sagellm_comm.plugins)", title_justify="left")
    for col in ("name", "distribution", "version", "api", "status", "backends"):
        pt.add_column(col, overflow="fold")
    pt.add_column("error", overflow="fold", ratio=1)
    for p in data["plugins"]:
        pt.add_row(
            _cell(p["name"]),
            _cell(p["distribution"]),
            _cell(p["version"]),
            _cell(p.get("api", "")),
            _cell(p["status"], _STATUS_STYLE.get(p["status"], "")),
            _cell(", ".join(p["backends"])),
            _cell(p["error"], "red" if p["status"] in _NOT_LOADED else ""),
        )
    if not data["plugins"]:
        pt.add_row(
            _cell("(none)"),
            _cell(""),
            _cell(""),
            _cell(""),
            _cell(""),
            _cell(""),
            _cell("no plugin installed; e.g. pip install 'isagellm-comm[gloo]'"),
        )
    console.print(pt)

    bt = Table(title="backends", title_justify="left")
    for col in ("name", "available", "devices", "priority", "plugin"):
        bt.add_column(col, overflow="fold")
    bt.add_column("reason", overflow="fold", ratio=1)
    for b in data["backends"]:
        bt.add_row(
            _cell(b["name"]),
            _cell("yes" if b["available"] else "no", "green" if b["available"] else "red"),
            _cell(", ".join(b["devices"])),
            _cell(b["priority"]),
            _cell(b["plugin"]),
            _cell(b["reason"]),
        )
    if not data["backends"]:
        bt.add_row(
            _cell("(none)"),
            _cell("no", "red"),
            _cell(""),
            _cell(""),
            _cell(""),
            _cell("no backend registered; install a plugin, e.g. pip install 'isagellm-comm[gloo]'"),
        )
    console.print(bt)
    auto = data.get("auto")
    if auto:  # what get_comm_backend("auto") gives here, for CPU tensors, and why
        console.print(
            Text(f"auto ({auto['device']} tensors, this environment): {auto['backend'] or 'none'} -- {auto['reason']}"),
            soft_wrap=True,
        )

    failed = [p for p in data["plugins"] if p["status"] in _NOT_LOADED]
    for p in failed:  # once more unwrapped, so the whole message is on one line whatever the width
        line = Text(
            f"{p['status'].upper()} plugin {p['name']!r} ({p['distribution'] or 'unknown distribution'}): {p['error']}",
            style="bold red",
        )
        console.print(line, soft_wrap=True)


def run_info(args: argparse.Namespace) -> int:
    data = collect_info()
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=False))
    else:
        render_info(data)
    return 0


def add_info_parser(sub: Any) -> None:
    p = sub.add_parser(
        "info",
        help="show versions, plugins (loaded/failed/disabled/incompatible) and backends",
        description="Show versions, every plugin's load status (with the error of those that "
        "failed, and why an incompatible one was skipped) and every backend's availability.",
    )
    p.add_argument("--json", action="store_true", help="print the same information as JSON")
    p.set_defaults(func=run_info)
