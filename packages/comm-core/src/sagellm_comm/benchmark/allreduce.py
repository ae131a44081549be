"""all_reduce latency/bandwidth sweep on local ranks, optionally against raw ``torch.distributed`` (Gloo).

Rank side (module-level functions, sent to the ranks by :class:`~sagellm_comm.launch.RankPool`):
``rank_setup`` initializes the backend (and the raw torch group), ``rank_all_reduce`` times one size,
``rank_teardown`` releases both; ``all_reduce_sweep`` does all three in one call (for ``launch``).

Timing: every iteration is a barrier (not timed) then ``perf_counter`` around one blocking all_reduce, on
every rank. With ``compare="torch"`` the raw engine's iteration follows ours on the same ranks (ours, raw,
ours, raw, ...), so both see the same machine noise. The parent takes, per iteration, the max over the
ranks (a collective is as slow as its slowest rank), then the median and p99 over the iterations.

Parent side: :func:`sweep_all_reduce` runs the whole sweep on ``nproc`` fresh local ranks and returns one
:class:`AllReduceRecord` per size.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from sagellm_protocol import CollectiveOp, CommOperationMetrics, ReduceOp

from sagellm_comm.benchmark.metrics import (
    DEFAULT_SIZES,
    algbw_gbps,
    bus_factor,
    max_across_ranks,
    median,
    p99,
)
from sagellm_comm.errors import BackendNotSupportedError, InvalidArgumentError

__all__ = [
    "COMPARE_CHOICES",
    "DTYPES",
    "RAW_TORCH_BACKEND",
    "AllReduceConfig",
    "AllReduceRecord",
    "all_reduce_sweep",
    "rank_all_reduce",
    "rank_setup",
    "rank_teardown",
    "resolve_dtype",
    "summarize_all_reduce",
    "sweep_all_reduce",
    "validate_all_reduce_config",
]

COMPARE_CHOICES = ("torch", "none")
# the raw engine ``compare="torch"`` measures: plain torch.distributed on a Gloo group (CPU tensors)
RAW_TORCH_BACKEND = "gloo"
MAX_ITERS = 1_000_000

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "int32": torch.int32,
    "int64": torch.int64,
}
_DTYPE_ALIASES = {
    "float": "float32",
    "fp32": "float32",
    "half": "float16",
    "fp16": "float16",
    "bf16": "bfloat16",
    "double": "float64",
    "fp64": "float64",
    "int": "int32",
    "long": "int64",
}


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """``"float32"`` (or an alias: ``fp16``, ``bf16``, ...) -> ``torch.float32``; else raises
    InvalidArgumentError."""
    if isinstance(name, torch.dtype):
        if name in DTYPES.values():
            return name
        raise InvalidArgumentError(f"unsupported dtype {name}; choose one of: {', '.join(DTYPES)}")
    key = str(name).strip().lower().removeprefix("torch.")
    key = _DTYPE_ALIASES.get(key, key)
    if key not in DTYPES:
        raise InvalidArgumentError(f"unknown dtype {name!r}; choose one of: {', '.join(DTYPES)}")
    return DTYPES[key]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ----------------------------------------------------------------------------------------------------------
# rank side
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _RankState:
    comm: Any
    raw_group: Any = None
    raw_owns_default: bool = False


_STATE: _RankState | None = None


def _synchronizer(device: torch.device) -> Callable[[], None]:
    """Blocking collectives on accelerators return once queued: wait for the device before stopping the
    clock."""
    if device.type == "cpu":
        return lambda: None
    module = getattr(torch, device.type, None)
    sync = getattr(module, "synchronize", None)
    return sync if callable(sync) else (lambda: None)


def _barrier_of(comm: Any, dtype: torch.dtype) -> Callable[[], None]:
    """The backend's barrier, or a one-element all_reduce (of the measured dtype, which the backend is known
    to support) for backends that do not declare a barrier."""
    if "barrier" in comm.capabilities.ops:
        return comm.barrier
    token = torch.zeros(1, dtype=dtype, device=comm.device)
    return lambda: comm.all_reduce(token, op="sum")


def rank_setup(backend: str = "auto", compare: str = "torch", raw_port: int | None = None) -> dict[str, Any]:
    """Initialize ``backend`` from the launcher's environment and, for ``compare="torch"``, a raw Gloo group.

    If our backend initialized torch's default group, the raw group is ``new_group(backend="gloo")`` (its own
    communicator); otherwise torch.distributed is initialized here on ``raw_port``.
    """
    global _STATE
    from sagellm_comm.registry import get_comm_backend

    if _STATE is not None:
        rank_teardown()
    comm = get_comm_backend(backend)
    world = comm.init_process_group()
    state = _RankState(comm=comm)
    _STATE = state
    if compare == "torch":
        import torch.distributed as dist

        timeout = datetime.timedelta(seconds=world.timeout_s or 120.0)
        if dist.is_initialized():
            state.raw_group = dist.new_group(backend=RAW_TORCH_BACKEND, timeout=timeout)
        else:
            if raw_port is None:
                raise InvalidArgumentError(
                    "compare='torch' needs raw_port: torch.distributed is not initialized "
                    f"by backend {comm.name!r}, so the raw group needs its own port"
                )
            addr = os.environ.get("MASTER_ADDR") or "127.0.0.1"
            dist.init_process_group(
                RAW_TORCH_BACKEND,
                init_method=f"tcp://{addr}:{raw_port}",
                rank=world.rank,
                world_size=world.world_size,
                timeout=timeout,
            )
            state.raw_group = dist.group.WORLD
            state.raw_owns_default = True
    elif compare != "none":
        raise InvalidArgumentError(f"compare must be one of {COMPARE_CHOICES}, got {compare!r}")
    return {
        "rank": world.rank,
        "world_size": world.world_size,
        "backend": comm.name,
        "group_id": world.group_id,
        "device": str(comm.device),
        "compare": compare,
    }


def rank_all_reduce(nbytes: int, dtype: str = "float32", warmup: int = 5, iters: int = 50) -> dict[str, Any]:
    """Time ``warmup + iters`` all_reduce(sum) calls of ``nbytes`` on this rank; returns the timed seconds
    (``ours`` and, when a raw group exists, ``raw``), one entry per timed iteration."""
    if _STATE is None:
        raise InvalidArgumentError("rank_all_reduce called before rank_setup on this rank")
    comm, raw_group = _STATE.comm, _STATE.raw_group
    tdtype = resolve_dtype(dtype)
    itemsize = torch.empty((), dtype=tdtype).element_size()
    numel = nbytes // itemsize
    if numel < 1 or numel * itemsize != nbytes:
        raise InvalidArgumentError(
            f"{nbytes} bytes is not a whole number of {_dtype_name(tdtype)} elements ({itemsize} bytes each)"
        )
    # zeros stay zeros under repeated sums: no overflow to inf, no denormals, over any number of iterations
    buf = torch.zeros(numel, dtype=tdtype, device=comm.device)
    sync = _synchronizer(buf.device)
    barrier = _barrier_of(comm, tdtype)
    ours: list[float] = []
    raw: list[float] | None = None
    if raw_group is not None:
        import torch.distributed as dist

        raw = []
        raw_buf = torch.zeros(numel, dtype=tdtype)
        raw_sum = dist.ReduceOp.SUM
    clock = time.perf_counter
    for i in range(warmup + iters):
        barrier()
        t0 = clock()
        comm.all_reduce(buf, op="sum")
        sync()
        t1 = clock()
        if raw is not None:
            dist.barrier(group=raw_group)
            t2 = clock()
            dist.all_reduce(raw_buf, op=raw_sum, group=raw_group)
            t3 = clock()
        if i >= warmup:
            ours.append(t1 - t0)
            if raw is not None:
                raw.append(t3 - t2)
    return {"rank": comm.get_rank(), "nbytes": nbytes, "ours": ours, "raw": raw}


def rank_teardown() -> None:
    """Release the raw torch group and our backend (safe to call twice)."""
    global _STATE
    state, _STATE = _STATE, None
    if state is None:
        return
    import torch.distributed as dist

    try:
        if state.raw_group is not None and dist.is_initialized():
            if state.raw_owns_default:
                dist.destroy_process_group()
            else:
                dist.destroy_process_group(state.raw_group)
    finally:
        state.comm.destroy()


def all_reduce_sweep(
    backend: str = "auto",
    sizes: Sequence[int] = DEFAULT_SIZES,
    dtype: str = "float32",
    warmup: int = 5,
    iters: int = 50,
    compare: str = "torch",
    raw_port: int | None = None,
) -> dict[str, Any]:
    """The whole sweep on one rank (setup, every size, teardown): ``launch(all_reduce_sweep, n, ...)``.

    Returns ``{"setup": <rank_setup result>, "sizes": [<rank_all_reduce result>, ...]}``.
    """
    setup = rank_setup(backend, compare, raw_port)
    try:
        return {"setup": setup, "sizes": [rank_all_reduce(n, dtype, warmup, iters) for n in sizes]}
    finally:
        rank_teardown()


# ----------------------------------------------------------------------------------------------------------
# parent side
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AllReduceConfig:
    nproc: int = 2
    backend: str = "auto"
    sizes: tuple[int, ...] = DEFAULT_SIZES
    dtype: str = "float32"
    warmup: int = 5
    iters: int = 50
    compare: str = "torch"


def validate_all_reduce_config(cfg: AllReduceConfig) -> AllReduceConfig:
    """Check everything that can be checked before starting ranks; return the config with the backend name
    resolved (``auto`` -> ``gloo``) and the dtype canonical. Raises ``InvalidArgumentError`` or
    ``BackendNotSupportedError`` (both ``CommError``) with a one-line message."""
    from sagellm_comm.launch.pool import MAX_LOCAL_RANKS
    from sagellm_comm.registry import get_comm_backend

    if isinstance(cfg.nproc, bool) or not isinstance(cfg.nproc, int) or not 1 <= cfg.nproc <= MAX_LOCAL_RANKS:
        raise InvalidArgumentError(f"nproc must be an int in 1..{MAX_LOCAL_RANKS}, got {cfg.nproc!r}")
    if isinstance(cfg.warmup, bool) or not isinstance(cfg.warmup, int) or not 0 <= cfg.warmup <= MAX_ITERS:
        raise InvalidArgumentError(f"warmup must be an int in 0..{MAX_ITERS}, got {cfg.warmup!r}")
    if isinstance(cfg.iters, bool) or not isinstance(cfg.iters, int) or not 1 <= cfg.iters <= MAX_ITERS:
        raise InvalidArgumentError(f"iters must be an int in 1..{MAX_ITERS}, got {cfg.iters!r}")
    if cfg.compare not in COMPARE_CHOICES:
        raise InvalidArgumentError(
            f"compare must be one of {', '.join(COMPARE_CHOICES)}, got {cfg.compare!r}"
        )
    tdtype = resolve_dtype(cfg.dtype)
    if not cfg.sizes:
        raise InvalidArgumentError("sizes must list at least one size")
    itemsize = torch.empty((), dtype=tdtype).element_size()
    for n in cfg.sizes:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidArgumentError(f"size {n!r} must be a positive number of bytes")
        if n % itemsize:
            raise InvalidArgumentError(
                f"size {n} bytes is not a multiple of the {_dtype_name(tdtype)} element size "
                f"({itemsize} bytes)"
            )
    comm = get_comm_backend(cfg.backend)
    caps = comm.capabilities
    if "all_reduce" not in caps.ops:
        raise BackendNotSupportedError(f"backend {comm.name!r} does not support all_reduce")
    if not caps.supports_reduce(ReduceOp.SUM, tdtype):
        raise BackendNotSupportedError(
            f"backend {comm.name!r} cannot all_reduce(sum) {_dtype_name(tdtype)} tensors"
        )
    return AllReduceConfig(
        nproc=cfg.nproc,
        backend=comm.name,
        sizes=tuple(cfg.sizes),
        dtype=_dtype_name(tdtype),
        warmup=cfg.warmup,
        iters=cfg.iters,
        compare=cfg.compare,
    )


@dataclass
class AllReduceRecord:
    """One size of the sweep: the protocol's ``CommOperationMetrics`` (median latency and its bandwidths) plus
    the p99 and the raw-engine comparison."""

    metrics: CommOperationMetrics
    backend: str
    world_size: int
    dtype: str
    iters: int
    warmup: int
    median_us: float
    p99_us: float
    raw_median_us: float | None = None
    raw_p99_us: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return self.metrics.bytes_transferred

    @property
    def algbw_gbps(self) -> float:
        return self.metrics.algo_bandwidth_gbps

    @property
    def busbw_gbps(self) -> float:
        return self.metrics.bus_bandwidth_gbps

    @property
    def ratio(self) -> float | None:
        """ours / raw median latency (1.0 = no overhead)."""
        if self.raw_median_us is None or not self.raw_median_us > 0:
            return None
        return self.median_us / self.raw_median_us

    @property
    def overhead_us(self) -> float | None:
        """ours - raw median latency, in microseconds."""
        return None if self.raw_median_us is None else self.median_us - self.raw_median_us

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.metrics.model_dump(mode="json"),
            "backend": self.backend,
            "world_size": self.world_size,
            "dtype": self.dtype,
            "iters": self.iters,
            "warmup": self.warmup,
            "median_us": self.median_us,
            "p99_us": self.p99_us,
            "raw_engine": None if self.raw_median_us is None else f"torch.distributed/{RAW_TORCH_BACKEND}",
            "raw_median_us": self.raw_median_us,
            "raw_p99_us": self.raw_p99_us,
            "ratio": self.ratio,
            "overhead_us": self.overhead_us,
            **self.extra,
        }


def summarize_all_reduce(
    nbytes: int,
    per_rank: Sequence[dict[str, Any]],
    *,
    backend: str,
    dtype: str,
    warmup: int,
    group_id: str = "world",
) -> AllReduceRecord:
    """Turn every rank's :func:`rank_all_reduce` result for one size into a record (max over ranks per
    iteration, then median/p99 over iterations; bandwidths from the median)."""
    world_size = len(per_rank)
    ours = max_across_ranks([r["ours"] for r in per_rank])
    med, tail = median(ours), p99(ours)
    raw_lists = [r.get("raw") for r in per_rank]
    raw_med = raw_tail = None
    if all(x is not None for x in raw_lists):
        raw = max_across_ranks(raw_lists)  # type: ignore[arg-type]
        raw_med, raw_tail = median(raw), p99(raw)
    algbw = algbw_gbps(nbytes, med)
    metrics = CommOperationMetrics(
        op=CollectiveOp.ALL_REDUCE,
        group_id=group_id,
        elapsed_ms=med * 1e3,
        bytes_transferred=nbytes,
        bandwidth_gbps=algbw,
        algo_bandwidth_gbps=algbw,
        bus_bandwidth_gbps=algbw * bus_factor(CollectiveOp.ALL_REDUCE, world_size),
    )
    return AllReduceRecord(
        metrics=metrics,
        backend=backend,
        world_size=world_size,
        dtype=dtype,
        iters=len(ours),
        warmup=warmup,
        median_us=med * 1e6,
        p99_us=tail * 1e6,
        raw_median_us=None if raw_med is None else raw_med * 1e6,
        raw_p99_us=None if raw_tail is None else raw_tail * 1e6,
    )


def sweep_all_reduce(
    cfg: AllReduceConfig,
    *,
    on_result: Callable[[int, int, AllReduceRecord], None] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
) -> list[AllReduceRecord]:
    """Run the sweep on ``cfg.nproc`` fresh local ranks; calls ``on_result(index, total, record)`` after
    each size."""
    from sagellm_comm.launch import RankPool, free_port

    cfg = validate_all_reduce_config(cfg)
    records: list[AllReduceRecord] = []
    with RankPool(cfg.nproc, env=env) as pool:
        raw_port = free_port() if cfg.compare == "torch" else None
        setups = pool.run(rank_setup, cfg.backend, cfg.compare, raw_port, timeout=timeout)
        group_id = setups[0]["group_id"]
        for i, nbytes in enumerate(cfg.sizes):
            per_rank = pool.run(rank_all_reduce, nbytes, cfg.dtype, cfg.warmup, cfg.iters, timeout=timeout)
            rec = summarize_all_reduce(
                nbytes,
                per_rank,
                backend=setups[0]["backend"],
                dtype=cfg.dtype,
                warmup=cfg.warmup,
                group_id=group_id,
            )
            records.append(rec)
            if on_result is not None:
                on_result(i, len(cfg.sizes), rec)
        # on failure the pool's close stops the ranks, and each rank destroys its backends on the way out
        pool.run(rank_teardown, timeout=60.0)
    return records
