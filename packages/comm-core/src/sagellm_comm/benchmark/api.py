"""Running a benchmark from Python or the command line: where the ranks come from, the sweep, the files.

Where the ranks come from:

- a ``CommBackend`` object passed as the backend: this process is one rank of its world (initialized by the
  caller, or here from the environment);
- under torchrun (RANK/WORLD_SIZE/LOCAL_RANK set): this process is one rank, the backend is initialized here;
- ``nproc=N`` otherwise: N local ranks are spawned (``sagellm_comm.launch``);
- neither: a world of one, in this process.

Rank 0 (or the launching process) shows progress, writes ``<op>_ws<N>_<timestamp>.json``/``.csv`` and the
optional PNG; every rank gets the records.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sagellm_comm.algorithms import AUTO
from sagellm_comm.benchmark.export import check_output_dir
from sagellm_comm.benchmark.records import BenchRecord
from sagellm_comm.benchmark.report import SweepProgress
from sagellm_comm.benchmark.sweep import (
    DEFAULT_OUTPUT_DIR,
    BenchConfig,
    Plan,
    export_records,
    in_torchrun,
    local_sessions,
    plan_sweep,
    pool_sessions,
    run_sweep,
)
from sagellm_comm.errors import InvalidArgumentError

__all__ = ["BenchResult", "Prepared", "execute", "prepare", "run_all_reduce_benchmark", "run_benchmark"]


@dataclass
class Prepared:
    """A checked run ready to execute: its plan, whether to spawn local ranks or run as one rank (torchrun), this
    rank, and whether to draw charts."""

    plan: Plan
    spawn: bool  # True: spawn plan.world_size local ranks; False: this process is rank ``rank``
    rank: int
    plot: bool = False

    @property
    def reporter(self) -> bool:
        """Whether this process prints, writes files and shows progress."""
        return self.spawn or self.rank == 0


@dataclass
class BenchResult:
    """What a run gave: its records, the result files and charts written, this rank, and ``wrong`` (elements a
    ``check`` found wrong, summed over records)."""

    records: list[BenchRecord]
    paths: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    rank: int = 0

    @property
    def wrong(self) -> int:
        return sum(r.wrong or 0 for r in self.records)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise InvalidArgumentError(f"environment variable {name}={raw!r} is not an integer") from None


def prepare(cfg: BenchConfig, nproc: int | None = None, *, plot: bool = False) -> Prepared:
    """Decide where the ranks come from and validate everything (output dir, plotting, the whole plan) before
    anything starts; raises a CommError with a one-line message."""
    from sagellm_comm.backend import CommBackend
    from sagellm_comm.launch.pool import MAX_LOCAL_RANKS

    objects = [b for b in cfg.backends if isinstance(b, CommBackend)]
    if nproc is not None and (
        isinstance(nproc, bool) or not isinstance(nproc, int) or not 1 <= nproc <= MAX_LOCAL_RANKS
    ):
        raise InvalidArgumentError(f"nproc must be an int in 1..{MAX_LOCAL_RANKS} (local ranks), got {nproc!r}")
    if objects:
        comm = objects[0]
        if comm.is_initialized:
            world, rank = comm.get_world_size(), comm.get_rank()
        else:
            world, rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0)
        spawn = False
    elif in_torchrun():
        world, rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0)
        if nproc is not None and nproc != world:
            raise InvalidArgumentError(
                f"--nproc {nproc} conflicts with torchrun's WORLD_SIZE={world}; under torchrun "
                "the world size comes from --nproc_per_node, drop --nproc"
            )
        spawn = False
    elif nproc is not None:
        world, rank, spawn = nproc, 0, True
    else:
        world, rank, spawn = 1, 0, False
    if plot:
        from sagellm_comm.benchmark.plot import require_matplotlib

        require_matplotlib()
    plan = plan_sweep(cfg, world)
    if cfg.output_dir is not None:
        check_output_dir(cfg.output_dir)
    if not spawn and len(plan.backends) > 1:
        local_sessions(plan)  # raises: one backend per torchrun invocation
    return Prepared(plan=plan, spawn=spawn, rank=rank, plot=plot)


def execute(
    prepared: Prepared,
    *,
    progress: bool = True,
    env: dict[str, str] | None = None,
    notify: Callable[[str], None] | None = None,
) -> BenchResult:
    """Run the plan; the reporting process writes the files (and charts) and gets their paths back."""
    plan = prepared.plan
    stamp = datetime.now()
    sessions = pool_sessions(plan, env) if prepared.spawn else local_sessions(plan)
    with SweepProgress(len(plan.units), enabled=progress and prepared.reporter) as bar:
        records = run_sweep(plan, sessions, progress=bar, stamp=stamp)
    result = BenchResult(records=records, rank=prepared.rank)
    if prepared.reporter and plan.config.output_dir is not None:
        result.paths = export_records(records, plan, plan.config.output_dir, stamp)
        if prepared.plot:
            from sagellm_comm.benchmark.plot import plot_files

            for json_path in (p for p in result.paths if p.suffix == ".json"):
                result.plots.append(plot_files([json_path]))
        if notify is not None:
            for p in result.paths + result.plots:
                notify(f"wrote {p}")
    return result


def run_benchmark(
    cfg: BenchConfig,
    nproc: int | None = None,
    *,
    plot: bool = False,
    progress: bool = True,
    env: dict[str, str] | None = None,
) -> BenchResult:
    """prepare + execute."""
    return execute(prepare(cfg, nproc, plot=plot), progress=progress, env=env)


def run_all_reduce_benchmark(
    backend: Any = "auto",
    message_sizes: Sequence[int | str] = (1024, 4096, 16384),
    output_dir: str | os.PathLike[str] | None = DEFAULT_OUTPUT_DIR,
    warmup_iters: int = 10,
    benchmark_iters: int = 100,
    *,
    algo: str | Sequence[str] = AUTO,
    dtype: str = "float32",
    selector_config: str | os.PathLike[str] | None = None,
    check: bool = False,
    compare: str = "none",
    nproc: int | None = None,
    plot: bool = False,
    progress: bool = False,
) -> list[BenchRecord]:
    """The seed's API: all_reduce(sum) latency and bandwidth over ``message_sizes`` (element counts, or sizes
    with units such as ``"4K"``); exports ``all_reduce_ws<N>_<timestamp>.json`` and ``.csv`` to ``output_dir``
    (None: no files) and returns one :class:`BenchRecord` per size and algorithm (``record.to_row()`` is the
    exported dict).

    ``backend``: an initialized ``CommBackend`` (this process is one of its ranks, e.g. under torchrun), a
    backend name (initialized here from the environment, or on ``nproc`` spawned local ranks), or ``"auto"``.
    """
    algos = (algo,) if isinstance(algo, str) else tuple(algo)
    cfg = BenchConfig(
        ops=("all_reduce",),
        backends=(backend,),
        algos=algos,
        sizes=tuple(message_sizes),
        dtype=dtype,
        warmup=warmup_iters,
        iters=benchmark_iters,
        check=check,
        compare=compare,
        selector_config=None if selector_config is None else str(selector_config),
        output_dir=None if output_dir is None else str(output_dir),
    )
    return run_benchmark(cfg, nproc, plot=plot, progress=progress).records
