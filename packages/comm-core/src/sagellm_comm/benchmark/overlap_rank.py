"""What each rank of the overlap benchmark runs: communication alone, compute alone, and both overlapped.

One iteration times three blocks, each after a barrier, in an order that alternates from one iteration to the next
(A B C, C B A, ...) so that all three see the same machine noise:

- **comm alone**: ``work = op(async_op=True)``; ``work.synchronize()``;
- **compute alone**: ``reps`` calibrated matmuls (:class:`~sagellm_comm.benchmark.compute.MatmulLoad`), then the
  caller's current stream is drained;
- **overlapped**: ``work = op(async_op=True)`` (``comm_submit``), the same matmuls and the drain of the current
  stream (``compute``), then ``work.synchronize()`` (``comm_wait``); ``total`` is all three.

On an accelerator the collective runs on the backend's communication stream and the matmuls on the caller's current
stream; only the current stream is drained after the compute, so the communication is free to still be running.
Times are seconds, one value per iteration; ranks are merged by the caller (per iteration, the max over ranks).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sagellm_comm.benchmark.compute import MatmulLoad
from sagellm_comm.benchmark.rank import current_comm
from sagellm_comm.benchmark.timing import barrier_of
from sagellm_comm.errors import BackendNotSupportedError, InvalidArgumentError
from sagellm_comm.work import device_synchronize

__all__ = ["OVERLAP_OPS", "SAMPLE_KEYS", "OverlapSpec", "rank_overlap_info", "rank_overlap_measure"]

OVERLAP_OPS = ("all_reduce", "all_gather")
SAMPLE_KEYS = ("comm_alone", "compute_alone", "comm_submit", "compute", "comm_wait", "total")
ELEMENT = torch.float32
ELEMENT_BYTES = 4


@dataclass(frozen=True)
class OverlapSpec:
    """One cell of the sweep: ``comm_bytes`` (this rank's input) of ``op`` against ``compute_ms`` of matmuls."""

    comm_bytes: int
    compute_ms: float
    op: str = "all_reduce"
    warmup: int = 5
    iters: int = 10


_LOADS: dict[str, MatmulLoad] = {}


def _load(device: torch.device) -> MatmulLoad:
    """The calibrated matmul of this process on ``device`` (calibrated once per process)."""
    key = str(device)
    if key not in _LOADS:
        _LOADS[key] = MatmulLoad(device)
    return _LOADS[key]


def _collective(comm: Any, spec: OverlapSpec) -> tuple[Callable[[], Any], Callable[[], object]]:
    """(launch, reset): ``launch()`` submits the op with ``async_op=True``; ``reset()`` refills its input (outside
    the timed blocks, so that repeated sums never reach inf)."""
    if spec.op not in OVERLAP_OPS:
        raise InvalidArgumentError(f"overlap op must be one of {', '.join(OVERLAP_OPS)}, got {spec.op!r}")
    caps = comm.capabilities
    if spec.op not in caps.ops or ELEMENT not in caps.dtypes:
        raise BackendNotSupportedError(f"backend {comm.name!r} does not support {spec.op} on float32")
    if not caps.async_ops:
        raise BackendNotSupportedError(
            f"backend {comm.name!r} does not accept async_op=True, which overlapping communication with compute needs"
        )
    count = spec.comm_bytes // ELEMENT_BYTES
    data = torch.ones(count, dtype=ELEMENT, device=comm.device)
    if spec.op == "all_reduce":
        return (lambda: comm.all_reduce(data, op="sum", async_op=True)), (lambda: data.fill_(1.0))
    out = torch.empty(count * comm.get_world_size(), dtype=ELEMENT, device=comm.device)
    return (lambda: comm.all_gather_into_tensor(out, data, async_op=True)), (lambda: None)


def rank_overlap_info() -> dict[str, Any]:
    """What the records say about this rank's backend and compute."""
    comm = current_comm()
    load = _load(comm.device)
    caps = comm.capabilities
    return {
        "device": str(comm.device),
        "matmul_size": load.n,
        "seconds_per_matmul": load.seconds_per_matmul,
        "concurrent_progress": bool(caps.concurrent_progress),
        "torch_threads": torch.get_num_threads(),
    }


def rank_overlap_measure(spec: OverlapSpec) -> dict[str, Any]:
    """Time ``spec`` on this rank: ``{key: [seconds per iteration]}`` for :data:`SAMPLE_KEYS`, plus ``reps``."""
    comm = current_comm()
    device = comm.device
    load = _load(device)
    reps = load.reps_for(spec.compute_ms)
    launch, reset = _collective(comm, spec)
    barrier = barrier_of(comm)
    wait_s = 60.0 + spec.comm_bytes / 10e6  # a bound for one op's wait: generous even on a slow shaped link
    clock = time.perf_counter
    samples: dict[str, list[float]] = {k: [] for k in SAMPLE_KEYS}

    def comm_alone() -> dict[str, float]:
        t0 = clock()
        launch().synchronize(wait_s)
        return {"comm_alone": clock() - t0}

    def compute_alone() -> dict[str, float]:
        t0 = clock()
        load.run(reps)
        device_synchronize(device)
        return {"compute_alone": clock() - t0}

    def overlapped() -> dict[str, float]:
        t0 = clock()
        work = launch()
        t1 = clock()
        load.run(reps)
        device_synchronize(device)  # the current (compute) stream only: the communication may still run
        t2 = clock()
        work.synchronize(wait_s)
        t3 = clock()
        return {"comm_submit": t1 - t0, "compute": t2 - t1, "comm_wait": t3 - t2, "total": t3 - t0}

    blocks = [comm_alone, compute_alone, overlapped]
    for i in range(spec.warmup + spec.iters):
        for block in blocks if i % 2 == 0 else blocks[::-1]:
            reset()
            device_synchronize(device)
            barrier()
            got = block()
            if i >= spec.warmup:
                for key, value in got.items():
                    samples[key].append(value)
    return {"samples": samples, "reps": reps}
