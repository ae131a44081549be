"""What a sweep shows a person: a progress bar on stderr for sweeps that take more than a few seconds, and the
summary table at the end (rich)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal, TypedDict

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from sagellm_comm.benchmark.metrics import format_size
from sagellm_comm.benchmark.records import BenchRecord


class _NumberColumn(TypedDict):
    """Table.add_column's keywords for a right-aligned number column."""

    justify: Literal["right"]
    no_wrap: bool


__all__ = ["SweepProgress", "overlap_table", "summary_table"]


class SweepProgress:
    """A progress bar over the sweep's units that appears only once the sweep has run ``delay_s`` seconds
    (short sweeps print nothing); disabled on every rank but 0."""

    def __init__(
        self, total: int, *, enabled: bool = True, delay_s: float = 2.0, console: Console | None = None
    ) -> None:
        self.total, self.enabled, self.delay_s = total, enabled, delay_s
        self.console = console or Console(stderr=True)
        self.done = 0
        self.description = ""
        self._start = time.monotonic()
        self._progress: Progress | None = None
        self._task: Any = None

    def _maybe_show(self) -> None:
        if self._progress is not None or not self.enabled or time.monotonic() - self._start < self.delay_s:
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task(self.description, total=self.total, completed=self.done)
        self._progress.start()

    def unit(self, description: str) -> None:
        """A unit starts."""
        self.description = description
        self._maybe_show()
        if self._progress is not None:
            self._progress.update(self._task, description=description)

    def advance(self) -> None:
        self.done += 1
        self._maybe_show()
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> SweepProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary_table(records: Sequence[BenchRecord], *, title: str = "") -> Table:
    """One row per record: nccl-tests' columns (size, count, time, algbw, busbw, #wrong) plus p99, the raw
    engine's time and our speedup over it where measured, and the selection rule."""
    check = any(r.wrong is not None for r in records)
    compare = any(r.raw_latency_ms is not None for r in records)
    table = Table(title=title or None, title_justify="left")
    right: _NumberColumn = {"justify": "right", "no_wrap": True}
    for name in ("op", "backend", "algo"):
        table.add_column(name, no_wrap=True)
    table.add_column("ranks", **right)
    table.add_column("size", **right)
    table.add_column("count", **right)
    table.add_column("time (us)", **right)
    table.add_column("p99 (us)", **right)
    table.add_column("algbw (GB/s)", **right)
    table.add_column("busbw (GB/s)", **right)
    if check:
        table.add_column("#wrong", **right)
    if compare:
        table.add_column("raw (us)", **right)
        table.add_column("speedup", **right)
    table.add_column("rule", no_wrap=True)
    for r in records:
        row = [
            r.op_type,
            r.backend_kind,
            r.algo_id,
            str(r.world_size),
            format_size(r.bytes),
            str(r.count),
            f"{r.latency_ms * 1e3:.1f}",
            f"{r.p99_latency_ms * 1e3:.1f}",
            f"{r.bandwidth_gbps:.3f}",
            f"{r.bus_bandwidth_gbps:.3f}",
        ]
        if check:
            row.append("-" if r.wrong is None else str(r.wrong))
        if compare:
            raw_us = None if r.raw_latency_ms is None else r.raw_latency_ms * 1e3
            row += [_fmt(raw_us, ".1f"), _fmt(r.speedup_vs_raw, ".2f")]
        row.append(r.selection_rule_id)
        table.add_row(*(Text(c) for c in row))
    return table


def overlap_table(records: Sequence[Any], *, title: str = "") -> Table:
    """One row per overlap cell: the measured parts, the same-run theory, efficiency and hidden share."""
    table = Table(title=title or None, title_justify="left")
    right: _NumberColumn = {"justify": "right", "no_wrap": True}
    for name in (
        "size",
        "compute asked (ms)",
        "comm alone",
        "compute alone",
        "sequential",
        "ideal",
        "total",
        "submit",
        "compute",
        "wait",
        "efficiency",
        "hidden",
    ):
        table.add_column(name, **right)
    table.add_column("note")
    for r in records:
        table.add_row(
            *(
                Text(c)
                for c in (
                    format_size(r.comm_bytes),
                    f"{r.compute_duration_ms:g}",
                    f"{r.comm_alone_ms:.2f}",
                    f"{r.compute_alone_ms:.2f}",
                    f"{r.theoretical_sequential_ms:.2f}",
                    f"{r.theoretical_overlap_ms:.2f}",
                    f"{r.total_ms:.2f}",
                    f"{r.comm_submit_ms:.3f}",
                    f"{r.compute_ms:.2f}",
                    f"{r.comm_wait_ms:.2f}",
                    _fmt(r.overlap_efficiency, ".2f"),
                    _fmt(r.overlap_ratio, ".0%"),
                    r.note,
                )
            )
        )
    return table
