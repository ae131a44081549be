"""One result row: the protocol's ``CommOperationMetrics`` plus the seed's fields and nccl-tests' extras.

Per-rank times are merged first (per iteration, the max over the ranks: a collective is as slow as its slowest
rank), then the median and p99 over iterations; bandwidths come from the median.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sagellm_protocol import CollectiveOp, CommOperationMetrics

from sagellm_comm.benchmark.metrics import algbw_gbps, bus_factor, max_across_ranks, median, p99

__all__ = ["EXTRA_FIELDS", "FIELDS", "SEED_FIELDS", "BenchRecord", "RunInfo", "merge_rank_results", "summarize"]

# the seed's output fields, in its order
SEED_FIELDS: tuple[str, ...] = (
    "bytes",
    "latency_ms",
    "bandwidth_gbps",
    "bus_bandwidth_gbps",
    "algo_id",
    "backend_kind",
    "topology_source",
    "world_size",
    "op_type",
    "data_type",
    "warmup_iters",
    "benchmark_iters",
    "selection_rule_id",
    "selection_reason",
    "timestamp",
)
"""The result columns of the seed's benchmark, first in every CSV and JSON row, in the seed's order."""
# what this package adds: nccl-tests' count, p99 and #wrong, the size asked for, the raw-engine comparison
EXTRA_FIELDS: tuple[str, ...] = (
    "count",
    "requested_bytes",
    "size_note",
    "p99_latency_ms",
    "calls_per_iter",
    "wrong",
    "backend_type",
    "group_id",
    "raw_engine",
    "raw_latency_ms",
    "raw_p99_latency_ms",
    "speedup_vs_raw",
)
FIELDS = SEED_FIELDS + EXTRA_FIELDS
"""Every result column: the seed's, then this project's (element count, requested bytes, p99, wrong elements, the
raw engine's times and the speedup over it, ...)."""


def _protocol_op(op: str) -> CollectiveOp:
    return CollectiveOp.SEND if op == "sendrecv" else CollectiveOp(op)


@dataclass(frozen=True)
class RunInfo:
    """What is the same for every row of a run."""

    backend: str
    backend_type: str
    world_size: int
    dtype: str
    timestamp: str
    topology_source: str
    group_id: str = "world"
    raw_engine: str | None = None


@dataclass
class BenchRecord:
    """One measured unit: the protocol's ``CommOperationMetrics`` plus op, algorithm, run facts, element count,
    requested size, p99, iteration counts, the selector's rule and reason, wrong elements and the raw engine's times;
    ``to_row()`` gives the CSV/JSON row."""

    metrics: CommOperationMetrics
    op_type: str
    algo_id: str
    run: RunInfo
    count: int
    requested_bytes: int
    p99_latency_ms: float
    warmup_iters: int
    benchmark_iters: int
    calls_per_iter: int
    selection_rule_id: str
    selection_reason: str
    size_note: str | None = None
    wrong: int | None = None
    raw_latency_ms: float | None = None
    raw_p99_latency_ms: float | None = None

    @property
    def bytes(self) -> int:
        return self.metrics.bytes_transferred

    @property
    def latency_ms(self) -> float:
        return self.metrics.elapsed_ms

    @property
    def bandwidth_gbps(self) -> float:
        return self.metrics.bandwidth_gbps

    @property
    def bus_bandwidth_gbps(self) -> float:
        return self.metrics.bus_bandwidth_gbps

    @property
    def backend_kind(self) -> str:
        return self.run.backend

    @property
    def world_size(self) -> int:
        return self.run.world_size

    @property
    def speedup_vs_raw(self) -> float | None:
        """raw latency / our latency: above 1 means ours is faster."""
        if self.raw_latency_ms is None or not self.latency_ms > 0:
            return None
        return self.raw_latency_ms / self.latency_ms

    def to_row(self) -> dict[str, Any]:
        """The flat record written to JSON and CSV (seed fields first)."""
        run = self.run
        row = {
            "bytes": self.bytes,
            "latency_ms": self.latency_ms,
            "bandwidth_gbps": self.bandwidth_gbps,
            "bus_bandwidth_gbps": self.bus_bandwidth_gbps,
            "algo_id": self.algo_id,
            "backend_kind": run.backend,
            "topology_source": run.topology_source,
            "world_size": run.world_size,
            "op_type": self.op_type,
            "data_type": run.dtype,
            "warmup_iters": self.warmup_iters,
            "benchmark_iters": self.benchmark_iters,
            "selection_rule_id": self.selection_rule_id,
            "selection_reason": self.selection_reason,
            "timestamp": run.timestamp,
            "count": self.count,
            "requested_bytes": self.requested_bytes,
            "size_note": self.size_note,
            "p99_latency_ms": self.p99_latency_ms,
            "calls_per_iter": self.calls_per_iter,
            "wrong": self.wrong,
            "backend_type": run.backend_type,
            "group_id": self.metrics.group_id,
            "raw_engine": run.raw_engine if self.raw_latency_ms is not None else None,
            "raw_latency_ms": self.raw_latency_ms,
            "raw_p99_latency_ms": self.raw_p99_latency_ms,
            "speedup_vs_raw": self.speedup_vs_raw,
        }
        return row


def merge_rank_results(per_rank: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every rank's ``rank_measure`` result -> one: per-iteration max over ranks, wrong elements summed."""
    raws = [r["raw"] for r in per_rank if r.get("raw") is not None]
    wrongs = [r.get("wrong") for r in per_rank]
    return {
        "ours": max_across_ranks([r["ours"] for r in per_rank]),
        "raw": max_across_ranks(raws) if len(raws) == len(per_rank) else None,
        "wrong": sum(wrongs) if all(w is not None for w in wrongs) else None,
        "decided": per_rank[0].get("decided"),
    }


def summarize(
    merged: dict[str, Any],
    *,
    op: str,
    algo: str,
    run: RunInfo,
    nbytes: int,
    requested_bytes: int,
    count: int,
    warmup: int,
    calls: int,
    selection_rule_id: str,
    selection_reason: str,
    size_note: str | None = None,
) -> BenchRecord:
    """A record from merged times (seconds per call, one per iteration; their number is benchmark_iters)."""
    ours = merged["ours"]
    med = median(ours)
    algbw = algbw_gbps(nbytes, med)
    metrics = CommOperationMetrics(
        op=_protocol_op(op),
        group_id=run.group_id,
        elapsed_ms=med * 1e3,
        bytes_transferred=nbytes,
        bandwidth_gbps=algbw,
        algo_bandwidth_gbps=algbw,
        bus_bandwidth_gbps=algbw * bus_factor(op, run.world_size),
    )
    raw = merged.get("raw")
    if merged.get("decided"):  # the backend chose per call (hier): what ran, its rule and reason
        picked, rule, reason = merged["decided"]
        algo, selection_rule_id, selection_reason = f"{algo}/{picked}", f"{run.backend}:{rule}", reason
    return BenchRecord(
        metrics=metrics,
        op_type=op,
        algo_id=algo,
        run=run,
        count=count,
        requested_bytes=requested_bytes,
        p99_latency_ms=p99(ours) * 1e3,
        warmup_iters=warmup,
        benchmark_iters=len(ours),
        calls_per_iter=calls,
        selection_rule_id=selection_rule_id,
        selection_reason=selection_reason,
        size_note=size_note,
        wrong=merged.get("wrong"),
        raw_latency_ms=None if raw is None else median(raw) * 1e3,
        raw_p99_latency_ms=None if raw is None else p99(raw) * 1e3,
    )
