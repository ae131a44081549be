"""The overlap benchmark: how much of a collective's time hides behind compute (the seed's
``run_overlap_benchmark``; definitions in docs/overlap.md).

For every (communication size, compute duration) cell each rank times communication alone, compute alone (real
matmuls calibrated to the requested duration) and both overlapped (``overlap_rank``). Per iteration the max over
ranks is taken, then the median over iterations. From the medians, measured in the same run:

- ``theoretical_sequential_ms`` = comm alone + compute alone;
- ``theoretical_overlap_ms`` (the ideal) = max(comm alone, compute alone);
- ``overlap_efficiency`` = (sequential - total) / (sequential - ideal), clipped to [0, 1];
- ``overlap_ratio`` = the fraction of the communication time hidden = (sequential - total) / comm alone, clipped.

When the time there is to hide, min(comm alone, compute alone), is no larger than the run-to-run spread of the
total (its interquartile range), neither ratio can be told from noise: both are None and ``note`` says so.

Where the ranks come from is the collective benchmark's rule, except that a world of one is never implied:
communication needs a peer. An initialized ``CommBackend`` (or a backend under torchrun) makes this process one
rank; otherwise ``nproc`` local ranks are spawned (default 2). ``nproc=1`` measures a world of one in this process.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sagellm_comm.benchmark.export import check_output_dir, write_results
from sagellm_comm.benchmark.metrics import median, parse_size
from sagellm_comm.benchmark.overlap_rank import (
    ELEMENT_BYTES,
    OVERLAP_OPS,
    SAMPLE_KEYS,
    OverlapSpec,
    rank_overlap_info,
    rank_overlap_measure,
)
from sagellm_comm.benchmark.rank import rank_setup
from sagellm_comm.benchmark.report import SweepProgress
from sagellm_comm.benchmark.sweep import LocalSession, PoolSession, _int_in, _reduce_tensor, in_torchrun
from sagellm_comm.errors import InvalidArgumentError

__all__ = [
    "DEFAULT_OVERLAP_OUTPUT_DIR",
    "OVERLAP_FIELDS",
    "OVERLAP_SCHEMA",
    "SEED_OVERLAP_FIELDS",
    "OverlapConfig",
    "OverlapRecord",
    "overlap_metrics",
    "run_overlap",
    "run_overlap_benchmark",
]

DEFAULT_OVERLAP_OUTPUT_DIR = ".benchmarks/overlap"
"""Where the overlap benchmark writes its results unless told otherwise."""
OVERLAP_SCHEMA = "sagellm-comm/overlap-benchmark/1"
DEFAULT_NPROC = 2
SEED_OVERLAP_FIELDS: tuple[str, ...] = (
    "comm_bytes",
    "compute_duration_ms",
    "comm_submit_ms",
    "comm_wait_ms",
    "compute_ms",
    "total_ms",
    "overlap_ratio",
    "overlap_efficiency",
    "theoretical_sequential_ms",
    "theoretical_overlap_ms",
)
"""The seed overlap benchmark's result columns, in its order."""
EXTRA_OVERLAP_FIELDS: tuple[str, ...] = (
    "comm_alone_ms",
    "compute_alone_ms",
    "spread_ms",
    "op_type",
    "backend_kind",
    "world_size",
    "device",
    "data_type",
    "matmul_size",
    "matmul_reps",
    "warmup_iters",
    "benchmark_iters",
    "note",
    "timestamp",
)
OVERLAP_FIELDS = SEED_OVERLAP_FIELDS + EXTRA_OVERLAP_FIELDS
"""Every overlap result column: the seed's, then this project's."""
MAX_ITERS = 100_000


@dataclass
class OverlapRecord:
    """One cell's result; ``to_row()`` is the exported dict (``record["overlap_ratio"]`` reads it too)."""

    comm_bytes: int
    compute_duration_ms: float  # asked for; each rank calibrates its own matmul count (matmul_reps: the most)
    comm_submit_ms: float
    comm_wait_ms: float
    compute_ms: float
    total_ms: float
    overlap_ratio: float | None
    overlap_efficiency: float | None
    theoretical_sequential_ms: float
    theoretical_overlap_ms: float
    comm_alone_ms: float
    compute_alone_ms: float
    spread_ms: float
    op_type: str
    backend_kind: str
    world_size: int
    device: str
    data_type: str
    matmul_size: int
    matmul_reps: int
    warmup_iters: int
    benchmark_iters: int
    note: str
    timestamp: str

    def to_row(self) -> dict[str, Any]:
        """The record as one CSV/JSON row."""
        return asdict(self)

    def __getitem__(self, key: str) -> Any:
        return self.to_row()[key]


def overlap_metrics(
    comm_alone: float, compute_alone: float, total: float, spread: float
) -> tuple[float, float, float | None, float | None, str]:
    """(sequential, ideal, efficiency, ratio, note) from the medians (any time unit)."""
    sequential = comm_alone + compute_alone
    ideal = max(comm_alone, compute_alone)
    hideable = sequential - ideal
    if hideable <= spread or hideable <= 0:
        return (
            sequential,
            ideal,
            None,
            None,
            (
                f"nothing measurable to hide: min(comm alone, compute alone) = {hideable:.4g} ms is within the "
                f"run-to-run spread of the total ({spread:.4g} ms)"
            ),
        )
    saved = sequential - total
    efficiency = min(1.0, max(0.0, saved / hideable))
    ratio = min(1.0, max(0.0, saved / comm_alone))
    return sequential, ideal, efficiency, ratio, ""


def _spread(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q3 - q1


def _merge(per_rank: Sequence[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Per iteration, the max over ranks (an overlapped step is as slow as its slowest rank)."""
    return {k: [max(vals) for vals in zip(*(r[k] for r in per_rank), strict=True)] for k in SAMPLE_KEYS}


def _record(
    spec: OverlapSpec, samples: dict[str, list[float]], reps: int, info: dict[str, Any], stamp: datetime
) -> OverlapRecord:
    ms = {k: median(v) * 1e3 for k, v in samples.items()}
    spread = _spread([t * 1e3 for t in samples["total"]])
    sequential, ideal, efficiency, ratio, note = overlap_metrics(
        ms["comm_alone"], ms["compute_alone"], ms["total"], spread
    )
    if not info["concurrent_progress"]:
        note = "; ".join(x for x in (note, f"backend {info['backend']} does not claim concurrent progress") if x)
    return OverlapRecord(
        comm_bytes=spec.comm_bytes,
        compute_duration_ms=spec.compute_ms,
        comm_submit_ms=ms["comm_submit"],
        comm_wait_ms=ms["comm_wait"],
        compute_ms=ms["compute"],
        total_ms=ms["total"],
        overlap_ratio=ratio,
        overlap_efficiency=efficiency,
        theoretical_sequential_ms=sequential,
        theoretical_overlap_ms=ideal,
        comm_alone_ms=ms["comm_alone"],
        compute_alone_ms=ms["compute_alone"],
        spread_ms=spread,
        op_type=spec.op,
        backend_kind=info["backend"],
        world_size=info["world_size"],
        device=info["device"],
        data_type="float32",
        matmul_size=info["matmul_size"],
        matmul_reps=reps,
        warmup_iters=spec.warmup,
        benchmark_iters=spec.iters,
        note=note,
        timestamp=stamp.astimezone().isoformat(timespec="seconds"),
    )


# ----------------------------------------------------------------------------------------------------------
# where the ranks are
# ----------------------------------------------------------------------------------------------------------
def overlap_setup(backend: str) -> dict[str, Any]:
    """On a spawned rank: initialize ``backend`` from the launcher's environment, calibrate the compute."""
    return {**rank_setup(backend), **rank_overlap_info()}


class _Pool(PoolSession):
    """``nproc`` spawned local ranks (the collective benchmark's pool, set up for overlap)."""

    def __init__(self, backend: str, nproc: int) -> None:
        super().__init__(backend, nproc)

    def _setup(self, raw_port: int | None) -> dict[str, Any]:
        return self._pool.run(overlap_setup, self.backend, timeout=180.0)[0]

    def measure(self, spec: OverlapSpec) -> tuple[dict[str, list[float]], int]:  # type: ignore[override]
        per_op = 2 * (spec.compute_ms / 1e3 + spec.comm_bytes / 10e6) + 0.05
        results = self._pool.run(rank_overlap_measure, spec, timeout=120.0 + (spec.warmup + spec.iters) * per_op)
        return _merge([r["samples"] for r in results]), max(r["reps"] for r in results)


class _Local(LocalSession):
    """This process is one rank (torchrun, a backend the caller initialized, or a world of one): the collective
    benchmark's session, with the compute calibrated on entry and the overlap samples max-reduced."""

    def __init__(self, backend: Any) -> None:
        super().__init__(backend)

    def __enter__(self) -> _Local:
        super().__enter__()
        self.info = {**self.info, **rank_overlap_info()}
        self.rank = self.info["rank"]
        return self

    def measure(self, spec: OverlapSpec) -> tuple[dict[str, list[float]], int]:  # type: ignore[override]
        local = rank_overlap_measure(spec)
        samples, reps = local["samples"], local["reps"]
        if self.comm.get_world_size() > 1:
            flat = [v for k in SAMPLE_KEYS for v in samples[k]] + [float(reps)]
            merged = _reduce_tensor(self.comm, flat, "max")
            n = spec.iters
            samples = {k: merged[i * n : (i + 1) * n] for i, k in enumerate(SAMPLE_KEYS)}
            reps = round(merged[-1])
        return samples, reps


# ----------------------------------------------------------------------------------------------------------
# the sweep
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OverlapConfig:
    """One overlap run: message sizes, compute durations, the op and backend, and iteration counts."""

    comm_bytes: tuple[int, ...] = (1 << 20, 4 << 20, 16 << 20)
    compute_ms: tuple[float, ...] = (5.0, 20.0, 50.0)
    op: str = "all_reduce"
    backend: Any = "auto"
    warmup: int = 5
    iters: int = 10
    nproc: int | None = None
    output_dir: str | None = DEFAULT_OVERLAP_OUTPUT_DIR

    def describe(self) -> dict[str, Any]:
        """The configuration as plain data, as result files record it."""
        backend = self.backend if isinstance(self.backend, str) else self.backend.name
        return {
            "comm_bytes": list(self.comm_bytes),
            "compute_ms": list(self.compute_ms),
            "op": self.op,
            "backend": backend,
            "warmup": self.warmup,
            "iters": self.iters,
            "nproc": self.nproc,
            "output_dir": self.output_dir,
        }


@dataclass
class OverlapResult:
    records: list[OverlapRecord]
    paths: list[Path] = field(default_factory=list)
    rank: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def _listed(name: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, str | bytes | int | float) or not isinstance(value, Sequence) or not value:
        raise InvalidArgumentError(f"{name} must be a non-empty list, got {value!r}")
    return tuple(value)


def validate(cfg: OverlapConfig) -> OverlapConfig:
    """Every argument checked before a rank starts (one-line InvalidArgumentError)."""
    from sagellm_comm.launch.pool import MAX_LOCAL_RANKS

    sizes = []
    for s in _listed("comm_bytes", cfg.comm_bytes):
        try:
            n = parse_size(s)
        except ValueError as exc:
            raise InvalidArgumentError(f"comm_bytes: {exc}") from None
        if n % ELEMENT_BYTES:
            raise InvalidArgumentError(
                f"comm_bytes {s!r} is not a whole number of float32 elements (a multiple of {ELEMENT_BYTES} bytes)"
            )
        sizes.append(n)
    for ms in _listed("compute_durations_ms", cfg.compute_ms):
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not (0 < ms < 3.6e6) or math.isnan(ms):
            raise InvalidArgumentError(f"compute durations must be positive milliseconds, got {ms!r}")
    if cfg.op not in OVERLAP_OPS:
        raise InvalidArgumentError(f"op must be one of {', '.join(OVERLAP_OPS)}, got {cfg.op!r}")
    _int_in("warmup_iters", cfg.warmup, 0, MAX_ITERS)
    _int_in("benchmark_iters", cfg.iters, 1, MAX_ITERS)
    if cfg.nproc is not None:
        _int_in("nproc", cfg.nproc, 1, MAX_LOCAL_RANKS)
    if cfg.output_dir is not None:
        check_output_dir(cfg.output_dir)
    durations = tuple(dict.fromkeys(map(float, cfg.compute_ms)))
    return OverlapConfig(
        comm_bytes=tuple(dict.fromkeys(sizes)),
        compute_ms=durations,
        op=cfg.op,
        backend=cfg.backend,
        warmup=cfg.warmup,
        iters=cfg.iters,
        nproc=cfg.nproc,
        output_dir=cfg.output_dir,
    )


def _session(cfg: OverlapConfig) -> _Pool | _Local:
    from sagellm_comm.backend import CommBackend

    if isinstance(cfg.backend, CommBackend) or in_torchrun():
        if cfg.nproc not in (None, 1) and not isinstance(cfg.backend, CommBackend):
            raise InvalidArgumentError(
                "nproc conflicts with torchrun's WORLD_SIZE; under torchrun the world size "
                "comes from --nproc_per_node, drop nproc"
            )
        return _Local(cfg.backend)
    nproc = DEFAULT_NPROC if cfg.nproc is None else cfg.nproc
    if nproc == 1:
        return _Local(cfg.backend)
    if not isinstance(cfg.backend, str):
        raise InvalidArgumentError(f"backend must be a backend name or a CommBackend, got {cfg.backend!r}")
    return _Pool(cfg.backend, nproc)


def run_overlap(cfg: OverlapConfig, *, progress: bool = True) -> OverlapResult:
    """Validate, measure every cell, and (on the reporting process) write the JSON and CSV."""
    cfg = validate(cfg)
    stamp = datetime.now()
    specs = [OverlapSpec(b, ms, cfg.op, cfg.warmup, cfg.iters) for b in cfg.comm_bytes for ms in cfg.compute_ms]
    with _session(cfg) as session:
        rank = getattr(session, "rank", 0)
        records = []
        with SweepProgress(len(specs), enabled=progress and rank == 0) as bar:
            for spec in specs:
                bar.unit(f"overlap {spec.op} {spec.comm_bytes} B vs {spec.compute_ms:g} ms")
                samples, reps = session.measure(spec)
                records.append(_record(spec, samples, reps, session.info, stamp))
                bar.advance()
        info = dict(session.info)
    result = OverlapResult(records=records, rank=rank, info=info)
    if rank == 0 and cfg.output_dir is not None:
        config = {
            **cfg.describe(),
            "matmul_seconds_rank0": info["seconds_per_matmul"],
            "torch_threads_rank0": info["torch_threads"],
        }
        result.paths = list(
            write_results(
                cfg.output_dir,
                cfg.op,
                info["world_size"],
                [r.to_row() for r in records],
                config,
                stamp,
                fields=OVERLAP_FIELDS,
                schema=OVERLAP_SCHEMA,
                prefix="overlap_",
            )
        )
    return result


def run_overlap_benchmark(
    comm_bytes: Sequence[int | str] = (1024, 4096, 16384),
    compute_durations_ms: Sequence[float] = (10, 50, 100),
    output_dir: str | os.PathLike[str] | None = DEFAULT_OVERLAP_OUTPUT_DIR,
    warmup_iters: int = 5,
    benchmark_iters: int = 10,
    *,
    backend: Any = "auto",
    op: str = "all_reduce",
    nproc: int | None = None,
    progress: bool = False,
) -> list[OverlapRecord]:
    """The seed's API: how much of an ``op`` (all_reduce, float32) of each ``comm_bytes`` hides behind real compute
    of each duration; writes ``overlap_<op>_ws<N>_<timestamp>.json`` and ``.csv`` to ``output_dir`` (None: no
    files) and returns one :class:`OverlapRecord` per (size, duration).

    ``backend``: an initialized ``CommBackend`` (this process is one of its ranks), or a name: initialized here under
    torchrun, else on ``nproc`` spawned local ranks (default 2; 1 = a world of one in this process).
    """
    cfg = OverlapConfig(
        comm_bytes=_listed("comm_bytes", comm_bytes),
        compute_ms=_listed("compute_durations_ms", compute_durations_ms),
        op=op,
        backend=backend,
        warmup=warmup_iters,
        iters=benchmark_iters,
        nproc=nproc,
        output_dir=None if output_dir is None else str(output_dir),
    )
    return run_overlap(cfg, progress=progress).records
