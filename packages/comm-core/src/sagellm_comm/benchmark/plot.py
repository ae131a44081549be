"""PNG charts of benchmark results: time per op and bus bandwidth against message size, log-log, one line per
backend/algorithm (dashed: the raw torch.distributed engine measured in the same run), one row of charts per op.

Reads the JSON (or CSV) files the sweep writes, from one run or several, so runs can be laid over each other.
matplotlib is an optional dependency (``pip install 'isagellm-comm-core[plot]'``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sagellm_comm.benchmark.export import atomic_write
from sagellm_comm.benchmark.metrics import format_size
from sagellm_comm.benchmark.records import FIELDS
from sagellm_comm.errors import InvalidArgumentError

__all__ = ["load_rows", "plot_files", "plot_rows", "require_matplotlib", "series"]

_NUMERIC = {
    "bytes",
    "latency_ms",
    "bandwidth_gbps",
    "bus_bandwidth_gbps",
    "world_size",
    "count",
    "p99_latency_ms",
    "raw_latency_ms",
    "raw_p99_latency_ms",
    "speedup_vs_raw",
}


def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend; InvalidArgumentError if it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidArgumentError(
            "plotting needs matplotlib, which is not installed: pip install 'isagellm-comm-core[plot]'"
        ) from None
    return plt


def _number(value: str) -> float | int | None:
    if value == "":
        return None
    f = float(value)
    return int(f) if f.is_integer() and "." not in value and "e" not in value.lower() else f


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read result file {str(path)!r}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        for row in rows:
            for key in _NUMERIC & set(row):
                try:
                    row[key] = _number(row[key])
                except ValueError:
                    raise InvalidArgumentError(f"{path}: column {key} has a non-number {row[key]!r}") from None
        return rows
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"result file {str(path)!r} is not JSON or CSV: {exc}") from None
    found = doc.get("results") if isinstance(doc, dict) else doc
    if not isinstance(found, list):
        raise InvalidArgumentError(f"{str(path)!r} is not a sagellm-comm benchmark result (no 'results' list)")
    return found


def load_rows(paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Every row of every file, each tagged with ``_source`` (the file's stem)."""
    if not paths:
        raise InvalidArgumentError("give at least one result file (.json or .csv) to plot")
    out: list[dict[str, Any]] = []
    for p in map(Path, paths):
        rows = _read(p)
        for row in rows:
            missing = [
                k
                for k in (
                    "bytes",
                    "latency_ms",
                    "bus_bandwidth_gbps",
                    "op_type",
                    "backend_kind",
                    "algo_id",
                    "world_size",
                )
                if k not in row
            ]
            if missing:
                raise InvalidArgumentError(
                    f"{str(p)!r}: a result row lacks {', '.join(missing)}; expected the fields {', '.join(FIELDS[:15])}"
                )
            out.append({**row, "_source": p.stem})
    if not out:
        raise InvalidArgumentError("the result files hold no rows to plot")
    return out


def series(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[tuple[float, float, float]]]]:
    """``{op: {label: [(bytes, latency_ms, busbw_gbps), ...]}}``; labels name backend/algorithm, plus the world
    size and the source file where those differ between the lines drawn. Raw-engine lines start with ``raw``."""
    many_ws = len({r["world_size"] for r in rows}) > 1
    keys = {(r["op_type"], r["backend_kind"], r["algo_id"], r["world_size"], r["_source"]) for r in rows}
    sources_per_line: dict[tuple[Any, ...], set[str]] = {}
    for op, backend, algo, ws, source in keys:
        sources_per_line.setdefault((op, backend, algo, ws), set()).add(source)
    many_sources = any(len(s) > 1 for s in sources_per_line.values())

    def suffix(r: dict[str, Any]) -> str:
        return (f" ws{r['world_size']}" if many_ws else "") + (f" [{r['_source']}]" if many_sources else "")

    out: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    raw_owner: dict[tuple[Any, ...], str] = {}
    for r in rows:
        lines = out.setdefault(r["op_type"], {})
        lines.setdefault(f"{r['backend_kind']}/{r['algo_id']}{suffix(r)}", []).append(
            (r["bytes"], r["latency_ms"], r["bus_bandwidth_gbps"])
        )
        if r.get("raw_latency_ms") is None:
            continue
        # one raw line per run and backend: the first algorithm's interleaved raw measurement
        key = (r["op_type"], r["backend_kind"], r["world_size"], r["_source"])
        owner = raw_owner.setdefault(key, r["algo_id"])
        if owner == r["algo_id"]:
            factor = r["bus_bandwidth_gbps"] * r["latency_ms"]  # busbw scales as 1/time at a fixed size
            lines.setdefault(
                f"raw {r.get('raw_engine') or 'torch.distributed'} (vs {r['backend_kind']}){suffix(r)}", []
            ).append((r["bytes"], r["raw_latency_ms"], factor / r["raw_latency_ms"]))
    for lines in out.values():
        for points in lines.values():
            points.sort()
    return out


def plot_rows(rows: Sequence[dict[str, Any]], out: str | os.PathLike[str], title: str | None = None) -> Path:
    """Draw ``rows`` into the PNG ``out`` (written atomically); returns its path."""
    plt = require_matplotlib()
    from matplotlib.ticker import FuncFormatter

    data = series(rows)
    fig, axes = plt.subplots(len(data), 2, figsize=(13, 4.4 * len(data)), squeeze=False)
    size_fmt = FuncFormatter(lambda x, _pos: format_size(int(x)) if x >= 1 else "")
    for row_axes, (op, lines) in zip(axes, data.items(), strict=True):
        lat_ax, bw_ax = row_axes
        for label, points in lines.items():
            xs = [p[0] for p in points]
            style = {"linestyle": "--", "alpha": 0.8} if label.startswith("raw ") else {}
            lat_ax.plot(xs, [p[1] * 1e3 for p in points], marker="o", label=label, **style)
            bw = [(x, p[2]) for x, p in zip(xs, points, strict=True) if p[2] > 0]
            if bw:
                bw_ax.plot([b[0] for b in bw], [b[1] for b in bw], marker="o", label=label, **style)
        lat_ax.set_title(f"{op}: time per op (median)")
        lat_ax.set_ylabel("time (us)")
        bw_ax.set_title(f"{op}: bus bandwidth")
        bw_ax.set_ylabel("busbw (GB/s)")
        for ax in row_axes:
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.xaxis.set_major_formatter(size_fmt)
            ax.set_xlabel("message size S")
            ax.grid(True, which="both", alpha=0.3)
        if lines:  # one legend per op, right of its charts (both charts share the lines)
            bw_ax.legend(
                *lat_ax.get_legend_handles_labels(),
                fontsize="small",
                loc="upper left",
                bbox_to_anchor=(1.02, 1.0),
                borderaxespad=0.0,
            )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    path = Path(out)
    return atomic_write(path, lambda f: f.write(buf.getvalue()), binary=True)


def plot_files(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str] | None = None) -> Path:
    """Plot one or several result files; ``out`` defaults to the single file's name with ``.png``, or
    ``plot_<timestamp>.png`` next to the first file."""
    rows = load_rows(paths)
    if out is None:
        first = Path(paths[0])
        out = (
            first.with_suffix(".png")
            if len(paths) == 1
            else first.parent / (f"plot_{datetime.now().strftime('%Y%m%d_%H%M%S')}.png")
        )
    out = Path(out)
    if out.is_dir():
        raise InvalidArgumentError(f"plot output {str(out)!r} is a directory; give a .png file name")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise InvalidArgumentError(f"cannot write plot {str(out)!r}: its directory does not exist or is not writable")
    return plot_rows(rows, out, title=", ".join(Path(p).name for p in paths))
