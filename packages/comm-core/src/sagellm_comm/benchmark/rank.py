"""What each rank runs (module-level functions, so :class:`~sagellm_comm.launch.RankPool` can send them, and
so a torchrun process can call them on itself).

``rank_setup`` initializes the backend from the launcher's environment (and a raw ``torch.distributed`` group
to compare against); ``rank_attach`` adopts a backend the caller already initialized; ``rank_measure`` checks
and times one :class:`UnitSpec`; ``rank_teardown`` releases what setup created.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch

from sagellm_comm.algorithms import get_algorithm
from sagellm_comm.benchmark.dtypes import resolve_dtype
from sagellm_comm.benchmark.timing import barrier_of, interleaved, synchronizer
from sagellm_comm.benchmark.workloads import RawGroup, SizePlan, Workload
from sagellm_comm.errors import InvalidArgumentError

__all__ = ["SAME", "UnitSpec", "rank_attach", "rank_measure", "rank_setup", "rank_teardown"]

# raw_backend="same": the torch.distributed backend ours wraps (gloo for gloo, nccl for nccl), else gloo
SAME = "same"
FALLBACK_RAW_BACKEND = "gloo"


@dataclass(frozen=True)
class UnitSpec:
    """One op, algorithm and size: what every rank runs for one row of the results."""

    op: str
    algo: str
    plan: SizePlan
    dtype: str = "float32"
    warmup: int = 5
    iters: int = 50
    calls: int = 1
    check: bool = False
    compare: bool = False
    root: int = 0


@dataclass
class _RankState:
    comm: Any
    owns_comm: bool
    raw: RawGroup | None = None
    raw_owns_default: bool = False


_STATE: _RankState | None = None


def raw_backend_name(comm: Any, raw_backend: str) -> str:
    if raw_backend != SAME:
        return raw_backend
    return getattr(comm, "torch_backend", "") or FALLBACK_RAW_BACKEND


def _raw_group(comm: Any, raw_backend: str, raw_port: int | None) -> tuple[RawGroup, bool]:
    """A torch.distributed group of every rank: a new group if ours already initialized torch.distributed, else
    the default group, met on ``raw_port`` (or torchrun's store when None)."""
    import torch.distributed as dist

    world = comm.world_group
    timeout = datetime.timedelta(seconds=world.timeout_s or 120.0)
    name = raw_backend_name(comm, raw_backend)
    same_engine = name == getattr(comm, "torch_backend", None)
    device = comm.device if same_engine else torch.device("cpu")
    if dist.is_initialized():
        return RawGroup(dist.new_group(backend=name, timeout=timeout), name, device), False
    addr = os.environ.get("MASTER_ADDR") or "127.0.0.1"
    init_method = "env://" if raw_port is None else f"tcp://{addr}:{raw_port}"
    dist.init_process_group(
        name, init_method=init_method, rank=world.rank, world_size=world.world_size, timeout=timeout
    )
    return RawGroup(dist.group.WORLD, name, device), True


def _describe(state: _RankState) -> dict[str, Any]:
    comm = state.comm
    return {
        "rank": comm.get_rank(),
        "world_size": comm.get_world_size(),
        "backend": comm.name,
        "backend_type": comm.backend_type.value,
        "group_id": comm.world_group.group_id,
        "device": str(comm.device),
        "raw_engine": None if state.raw is None else f"torch.distributed/{state.raw.backend}",
    }


def _install(state: _RankState, raw_backend: str | None, raw_port: int | None) -> dict[str, Any]:
    global _STATE
    _STATE = state
    if raw_backend is not None:
        state.raw, state.raw_owns_default = _raw_group(state.comm, raw_backend, raw_port)
    return _describe(state)


def rank_setup(backend: str = "auto", raw_backend: str | None = None, raw_port: int | None = None) -> dict[str, Any]:
    """Initialize ``backend`` from the environment (RANK, WORLD_SIZE, MASTER_ADDR, ...) and, when
    ``raw_backend`` is given, the raw torch.distributed group to compare with."""
    from sagellm_comm.registry import get_comm_backend

    if _STATE is not None:
        rank_teardown()
    comm = get_comm_backend(backend)
    comm.init_process_group()
    return _install(_RankState(comm=comm, owns_comm=True), raw_backend, raw_port)


def rank_attach(comm: Any, raw_backend: str | None = None) -> dict[str, Any]:
    """Measure on ``comm``, which the caller initialized (and keeps: teardown leaves it alone)."""
    if _STATE is not None:
        rank_teardown()
    if not comm.is_initialized:
        comm.init_process_group()
        return _install(_RankState(comm=comm, owns_comm=True), raw_backend, None)
    return _install(_RankState(comm=comm, owns_comm=False), raw_backend, None)


def rank_measure(spec: UnitSpec) -> dict[str, Any]:
    """Check (if asked) and time one unit on this rank: ``{"ours": [s...], "raw": [s...] | None, "wrong": n,
    "decided": ...}``, seconds per call, one value per iteration."""
    if _STATE is None:
        raise InvalidArgumentError("rank_measure called before rank_setup on this rank")
    comm = _STATE.comm
    if spec.compare and _STATE.raw is None:
        raise InvalidArgumentError("compare requested but this rank was set up without a raw group")
    fn = get_algorithm(spec.algo).fn(spec.op)
    work = Workload(
        spec.op, spec.plan, resolve_dtype(spec.dtype), comm, fn, spec.root, _STATE.raw if spec.compare else None
    )
    wrong = work.check() if spec.check else None
    engines, barriers = {"ours": work.ours}, {"ours": barrier_of(comm)}
    if work.has_raw:
        engines["raw"], barriers["raw"] = work.raw, work.raw_barrier
    times = interleaved(
        engines,
        blocks=spec.iters,
        calls=spec.calls,
        warmup=spec.warmup,
        barriers=barriers,
        sync=synchronizer(comm.device),
    )
    return {"ours": times["ours"], "raw": times.get("raw"), "wrong": wrong, "decided": decided(comm)}


def decided(comm: Any) -> list[str] | None:
    """A backend that decides per call how to run it (the hier composite): its last decision (algo, rule, reason),
    the same on every rank."""
    d = getattr(comm, "last_decision", None)
    return None if d is None else [d.algo, d.rule_id, d.reason]


def rank_teardown() -> None:
    """Release the raw group and, if setup created it, our backend (safe to call twice)."""
    global _STATE
    state, _STATE = _STATE, None
    if state is None:
        return
    import torch.distributed as dist

    try:
        if state.raw is not None and dist.is_initialized():
            if state.raw_owns_default:
                dist.destroy_process_group()
            else:
                dist.destroy_process_group(state.raw.group)
    finally:
        if state.owns_comm:
            state.comm.destroy()


def current_comm() -> Any:
    """The backend this rank measures on (set by rank_setup/rank_attach)."""
    if _STATE is None:
        raise InvalidArgumentError("no benchmark backend on this rank: call rank_setup first")
    return _STATE.comm
