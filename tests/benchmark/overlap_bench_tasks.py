"""Ranks of the overlap benchmark tests (module-level, so the launcher can send them by name)."""

from __future__ import annotations

from typing import Any


def overlap_on_my_backend(output_dir: str) -> dict[str, Any]:
    """The seed's call with a backend this rank initialized (as under torchrun): every rank gets the records, rank
    0 writes the files."""
    from sagellm_comm import get_comm_backend
    from sagellm_comm.benchmark import run_overlap_benchmark

    comm = get_comm_backend("gloo")
    comm.init_process_group()
    try:
        records = run_overlap_benchmark(
            backend=comm,
            comm_bytes=[64 * 1024],
            compute_durations_ms=[5],
            output_dir=output_dir,
            warmup_iters=1,
            benchmark_iters=3,
        )
        return {"rows": [r.to_row() for r in records], "initialized_after": comm.is_initialized}
    finally:
        comm.destroy()
