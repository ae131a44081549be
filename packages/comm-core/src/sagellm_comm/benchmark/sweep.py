"""The collective benchmark sweep: a validated plan, the ranks it runs on, and the records it produces.

:func:`plan_sweep` checks everything that can be checked before a rank starts (ops, algorithms, backends and
what they declare, sizes, selector config) and resolves every unit's algorithm. :func:`run_sweep` measures the
units on a session per backend: :class:`PoolSession` spawns local ranks (the standalone path),
:class:`LocalSession` makes this process one rank of a world someone else started (torchrun, or a backend the
caller initialized).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.algorithms import AUTO, Selection, SelectorConfig, get_algorithm, load_selector_config, resolve_op
from sagellm_comm.algorithms import select as select_algorithm
from sagellm_comm.algorithms.cost import job_network
from sagellm_comm.benchmark.dtypes import dtype_name, itemsize, resolve_dtype
from sagellm_comm.benchmark.export import write_results
from sagellm_comm.benchmark.metrics import DEFAULT_SIZES, MessageSize, parse_message_size
from sagellm_comm.benchmark.rank import SAME, UnitSpec, rank_attach, rank_measure, rank_setup, rank_teardown
from sagellm_comm.benchmark.records import BenchRecord, RunInfo, merge_rank_results, summarize
from sagellm_comm.benchmark.report import SweepProgress
from sagellm_comm.benchmark.workloads import REDUCING_OPS, plan_size
from sagellm_comm.errors import BackendNotSupportedError, InvalidArgumentError

__all__ = [
    "COMPARE_CHOICES",
    "DEFAULT_MESSAGE_SIZES",
    "DEFAULT_OUTPUT_DIR",
    "BenchConfig",
    "LocalSession",
    "Plan",
    "PlannedUnit",
    "PoolSession",
    "export_records",
    "in_torchrun",
    "local_sessions",
    "plan_sweep",
    "pool_sessions",
    "raw_backend_of",
    "run_sweep",
    "topology_source",
]

DEFAULT_OUTPUT_DIR = ".benchmarks/collective"
"""Where result files go unless ``output_dir`` says otherwise."""
DEFAULT_MESSAGE_SIZES: tuple[MessageSize, ...] = tuple(MessageSize(b, "bytes") for b in DEFAULT_SIZES)
"""``DEFAULT_SIZES`` as message sizes in bytes."""
COMPARE_CHOICES = ("none", "torch")
"""Values of ``compare``: ``torch`` also times raw torch.distributed on the same ranks."""
MAX_ITERS = 1_000_000


def in_torchrun() -> bool:
    """True when torchrun (or another launcher with its environment) started this process as one rank."""
    env = os.environ
    return "TORCHELASTIC_RUN_ID" in env or all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run: ops, backends (names or initialized backends), algorithms, sizes (element counts or sizes
    with units), dtype, warmup and timed iterations, ``check`` (compare one call with a local reference),
    ``compare`` (``torch``: raw torch.distributed beside), the selector config, the output directory and the root."""

    ops: tuple[str, ...] = ("all_reduce",)
    backends: tuple[Any, ...] = ("auto",)  # names, or initialized CommBackend objects (the Python API)
    algos: tuple[str, ...] = (AUTO,)
    sizes: tuple[Any, ...] = DEFAULT_MESSAGE_SIZES  # element counts (int, "1024") or sizes with units ("4K")
    dtype: str = "float32"
    warmup: int = 5
    iters: int = 50
    calls: int = 1
    check: bool = False
    compare: str = "none"
    raw_backend: str = SAME
    selector_config: str | None = None
    output_dir: str | None = DEFAULT_OUTPUT_DIR
    root: int = 0

    def describe(self) -> dict[str, Any]:
        """The configuration as plain data (backend names, sizes as text), as result files record it."""
        d = asdict(self)
        d["backends"] = [b if isinstance(b, str) else b.name for b in self.backends]
        d["sizes"] = [str(parse_message_size(s)) for s in self.sizes]
        return d


@dataclass(frozen=True)
class PlannedUnit:
    backend: str
    spec: UnitSpec
    selection: Selection


@dataclass
class Plan:
    """What a run will measure: the units (backend, op, size, algorithm) the configuration expands to, checked
    before any rank starts, with notes on choices made."""

    config: BenchConfig
    world_size: int
    backends: tuple[str, ...]
    units: list[PlannedUnit]
    notes: list[str] = field(default_factory=list)
    instances: dict[str, Any] = field(default_factory=dict)

    def units_of(self, backend: str) -> list[PlannedUnit]:
        """The planned units of one backend, in run order."""
        return [u for u in self.units if u.backend == backend]


def _int_in(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidArgumentError(f"{name} must be an int in {lo}..{hi}, got {value!r}")
    return value


def _dedupe(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(items))


def _backend_instances(names: Sequence[Any]) -> dict[str, Any]:
    from sagellm_comm.backend import CommBackend
    from sagellm_comm.registry import get_comm_backend

    out: dict[str, Any] = {}
    for item in names:
        comm = item if isinstance(item, CommBackend) else get_comm_backend(str(item))
        out.setdefault(comm.name, comm)
    return out


def _check_unit(comm: Any, op: str, algo: str, dtype: torch.dtype) -> None:
    algorithm = get_algorithm(algo)
    algorithm.fn(op)
    algorithm.check_backend(op, comm)
    caps = comm.capabilities
    if dtype not in caps.dtypes:
        raise BackendNotSupportedError(f"backend {comm.name!r} does not support dtype {dtype_name(dtype)}")
    if algorithm.needs is None and op in REDUCING_OPS and not caps.supports_reduce(ReduceOp.SUM, dtype):
        raise BackendNotSupportedError(f"backend {comm.name!r} cannot {op}(sum) {dtype_name(dtype)} tensors")


def _units_of_op(
    cfg: BenchConfig,
    comm: Any,
    op: str,
    sizes: Sequence[MessageSize],
    algos: Sequence[str],
    dtype: torch.dtype,
    world_size: int,
    selector: SelectorConfig | None,
    notes: list[str],
    nodes: int | None = None,
    network: Any = None,
) -> list[PlannedUnit]:
    """One op on one backend: every distinct size x every distinct algorithm it resolves to; rounding notes are
    appended to ``notes``."""
    item = itemsize(dtype)
    units: list[PlannedUnit] = []
    planned: set[int] = set()
    for size in sizes:
        plan = plan_size(op, size.to_bytes(item), world_size, item, dtype_name(dtype))
        if plan.nbytes in planned:  # 256 (elements) and 1K (bytes) are the same float32 message
            continue
        planned.add(plan.nbytes)
        if plan.note and plan.note not in notes:
            notes.append(plan.note)
        chosen: list[str] = []
        for algo in algos:
            if algo == AUTO and hasattr(comm, "explain"):  # the backend decides per call (hier); records say how
                sel = Selection("native", "backend-decides", f"{comm.name} chooses its path per call")
            else:
                sel = select_algorithm(
                    op, plan.nbytes, world_size, comm.name, algo, selector, nodes=nodes, network=network
                )
            if sel.algo in chosen:
                continue
            _check_unit(comm, op, sel.algo, dtype)
            chosen.append(sel.algo)
            spec = UnitSpec(
                op=op,
                algo=sel.algo,
                plan=plan,
                dtype=dtype_name(dtype),
                warmup=cfg.warmup,
                iters=cfg.iters,
                calls=cfg.calls,
                check=cfg.check,
                compare=cfg.compare == "torch",
                root=cfg.root,
            )
            units.append(PlannedUnit(comm.name, spec, sel))
    return units


def plan_sweep(cfg: BenchConfig, world_size: int) -> Plan:
    """Validate ``cfg`` for ``world_size`` ranks and resolve every unit; raises a CommError (one line) on any
    problem, before anything runs."""
    _int_in("world size", world_size, 1, 1 << 20)
    _int_in("warmup", cfg.warmup, 0, MAX_ITERS)
    _int_in("iters", cfg.iters, 1, MAX_ITERS)
    _int_in("calls", cfg.calls, 1, MAX_ITERS)
    _int_in("root", cfg.root, 0, world_size - 1)
    if cfg.compare not in COMPARE_CHOICES:
        raise InvalidArgumentError(f"compare must be one of {', '.join(COMPARE_CHOICES)}, got {cfg.compare!r}")
    if not cfg.ops or not cfg.sizes or not cfg.algos or not cfg.backends:
        raise InvalidArgumentError("ops, sizes, algos and backends must each list at least one value")
    ops = _dedupe(resolve_op(op) for op in cfg.ops)
    algos = _dedupe(str(a).strip().lower().replace("-", "_") for a in cfg.algos)
    for algo in algos:
        if algo != AUTO:
            get_algorithm(algo)
    dtype = resolve_dtype(cfg.dtype)
    try:
        sizes = [parse_message_size(s) for s in cfg.sizes]
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    selector: SelectorConfig | None = None
    if cfg.selector_config:
        selector = load_selector_config(cfg.selector_config)
    instances = _backend_instances(cfg.backends)
    units: list[PlannedUnit] = []
    notes: list[str] = []
    try:
        nodes, network = job_network(world_size)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    for comm in instances.values():
        for op in ops:
            units += _units_of_op(cfg, comm, op, sizes, algos, dtype, world_size, selector, notes, nodes, network)
    norm = BenchConfig(
        ops=ops,
        backends=tuple(instances),
        algos=algos,
        sizes=tuple(sizes),
        dtype=dtype_name(dtype),
        warmup=cfg.warmup,
        iters=cfg.iters,
        calls=cfg.calls,
        check=cfg.check,
        compare=cfg.compare,
        raw_backend=cfg.raw_backend,
        selector_config=cfg.selector_config,
        output_dir=cfg.output_dir,
        root=cfg.root,
    )
    return Plan(
        config=norm, world_size=world_size, backends=tuple(instances), units=units, notes=notes, instances=instances
    )


# ----------------------------------------------------------------------------------------------------------
# sessions: where the ranks are
# ----------------------------------------------------------------------------------------------------------
def _unit_timeout(spec: UnitSpec) -> float:
    """Generous: 60 s plus every call at 50 MB/s + 2 ms (a slow, oversubscribed host)."""
    calls = (spec.warmup + spec.iters * (spec.calls + 1)) * (2 if spec.compare else 1) + 1  # +1: lead-in call
    return 60.0 + calls * (2e-3 + spec.plan.nbytes / 50e6)


class PoolSession:
    """``world_size`` spawned local ranks running one backend (and the raw group when comparing)."""

    def __init__(
        self, backend: str, world_size: int, raw_backend: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.backend, self.world_size, self.raw_backend, self.env = backend, world_size, raw_backend, env
        self.info: dict[str, Any] = {}
        self._pool: Any = None

    def __enter__(self) -> Self:
        from sagellm_comm.launch import RankPool, free_port

        self._pool = RankPool(self.world_size, env=self.env)
        try:
            self.info = self._setup(free_port() if self.raw_backend else None)
        except BaseException:
            self._pool.close()
            raise
        return self

    def _setup(self, raw_port: int | None) -> dict[str, Any]:
        """Set every rank up; rank 0's description of the run."""
        return self._pool.run(rank_setup, self.backend, self.raw_backend, raw_port, timeout=180.0)[0]

    def measure(self, spec: UnitSpec) -> dict[str, Any]:
        """Run one unit on every spawned rank and merge the ranks' timings (per iteration the max over ranks)."""
        return merge_rank_results(self._pool.run(rank_measure, spec, timeout=_unit_timeout(spec)))

    def __exit__(self, *exc: object) -> None:
        try:
            if not self._pool.broken:
                self._pool.run(rank_teardown, timeout=60.0)
        finally:
            self._pool.close()


def _reduce_tensor(comm: Any, values: list[float], op: str) -> list[float]:
    caps = comm.capabilities
    dtype = next(
        (d for d in (torch.float64, torch.float32) if d in caps.dtypes and caps.supports_reduce(ReduceOp(op), d)), None
    )
    if dtype is None:
        raise BackendNotSupportedError(
            f"backend {comm.name!r} cannot all_reduce({op}) float64/float32, which the "
            "benchmark uses to combine the ranks' times under torchrun"
        )
    t = torch.tensor(values, dtype=dtype, device=comm.device)
    comm.all_reduce(t, op=op)
    return [float(v) for v in t.cpu().tolist()]


class LocalSession:
    """This process is one rank: ``backend`` is a name (initialized here from the torchrun environment) or a
    CommBackend (initialized by the caller, or here if it is not yet). Times are max-reduced across the ranks
    with the backend's own all_reduce(max)."""

    def __init__(self, backend: Any, raw_backend: str | None = None) -> None:
        self.backend, self.raw_backend = backend, raw_backend
        self.info: dict[str, Any] = {}
        self.comm: Any = None

    def __enter__(self) -> Self:
        from sagellm_comm.backend import CommBackend
        from sagellm_comm.benchmark.rank import current_comm

        if isinstance(self.backend, CommBackend):
            self.info = rank_attach(self.backend, self.raw_backend)
        else:
            self.info = rank_setup(self.backend, self.raw_backend, None)
        self.comm = current_comm()
        return self

    def measure(self, spec: UnitSpec) -> dict[str, Any]:
        """Run one unit on this rank and max-reduce the timings across the ranks with the backend itself."""
        local = rank_measure(spec)
        if self.comm.get_world_size() == 1:
            return merge_rank_results([local])
        ours, raw = local["ours"], local["raw"]
        merged = _reduce_tensor(self.comm, ours + (raw or []), "max")
        wrong = None
        if local["wrong"] is not None:
            wrong = round(_reduce_tensor(self.comm, [float(local["wrong"])], "sum")[0])
        return {
            "ours": merged[: len(ours)],
            "raw": merged[len(ours) :] if raw is not None else None,
            "wrong": wrong,
            "decided": local.get("decided"),
        }

    def __exit__(self, *exc: object) -> None:
        rank_teardown()


# ----------------------------------------------------------------------------------------------------------
# the sweep
# ----------------------------------------------------------------------------------------------------------
def topology_source() -> str:
    """Where this run's topology came from: ``discover:core`` plus each plugin that contributed facts."""
    try:
        from sagellm_comm.topology import Topology

        topo = Topology.discover()
    except Exception as exc:  # a broken topology plugin must not stop a benchmark
        return f"unavailable ({type(exc).__name__}: {exc})"
    return "discover:" + "+".join(["core", *sorted(topo.facts)])


def _itemsize_of(dtype: str) -> int:
    return itemsize(resolve_dtype(dtype))


def run_sweep(
    plan: Plan,
    session_for: Callable[[str], Any],
    *,
    progress: SweepProgress | None = None,
    stamp: datetime | None = None,
) -> list[BenchRecord]:
    """Measure every unit of ``plan``, one session per backend; records in plan order."""
    stamp = stamp or datetime.now()
    topo = topology_source()
    records: list[BenchRecord] = []
    progress = progress or SweepProgress(len(plan.units), enabled=False)
    cfg = plan.config
    for backend in plan.backends:
        with session_for(backend) as session:
            info = session.info
            run = RunInfo(
                backend=info["backend"],
                backend_type=info["backend_type"],
                world_size=info["world_size"],
                dtype=cfg.dtype,
                timestamp=stamp.astimezone().isoformat(timespec="seconds"),
                topology_source=topo,
                group_id=info["group_id"],
                raw_engine=info.get("raw_engine"),
            )
            for unit in plan.units_of(backend):
                spec = unit.spec
                progress.unit(f"{spec.op} {unit.backend}/{spec.algo} {spec.plan.nbytes} B")
                merged = session.measure(spec)
                records.append(
                    summarize(
                        merged,
                        op=spec.op,
                        algo=spec.algo,
                        run=run,
                        nbytes=spec.plan.nbytes,
                        requested_bytes=spec.plan.requested_bytes,
                        count=spec.plan.nbytes // _itemsize_of(spec.dtype),
                        warmup=spec.warmup,
                        calls=spec.calls,
                        selection_rule_id=unit.selection.rule_id,
                        selection_reason=unit.selection.reason,
                        size_note=spec.plan.note,
                    )
                )
                progress.advance()
    return records


def raw_backend_of(plan: Plan) -> str | None:
    return plan.config.raw_backend if plan.config.compare == "torch" else None


def pool_sessions(plan: Plan, env: dict[str, str] | None = None) -> Callable[[str], PoolSession]:
    """Sessions on ``plan.world_size`` freshly spawned local ranks (one pool per backend)."""
    return lambda backend: PoolSession(backend, plan.world_size, raw_backend_of(plan), env)


def local_sessions(plan: Plan) -> Callable[[str], LocalSession]:
    """Sessions in this process, one rank of a world started elsewhere (torchrun, or the caller)."""
    raw_backend = raw_backend_of(plan)
    if len(plan.backends) > 1:
        raise InvalidArgumentError(
            f"{len(plan.backends)} backends requested, but a world started by torchrun (or "
            "by the caller) runs one backend per invocation; run once per backend"
        )
    return lambda backend: LocalSession(plan.instances.get(backend, backend), raw_backend)


def export_records(
    records: Sequence[BenchRecord], plan: Plan, output_dir: str | os.PathLike[str], stamp: datetime
) -> list[Path]:
    """One JSON + CSV per op; returns the written paths (JSON, CSV, JSON, CSV, ...)."""
    paths: list[Path] = []
    config = plan.config.describe()
    for op in plan.config.ops:
        rows = [r.to_row() for r in records if r.op_type == op]
        if rows:
            paths.extend(write_results(output_dir, op, plan.world_size, rows, config, stamp))
    return paths
