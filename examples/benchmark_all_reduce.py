"""all_reduce latency and bandwidth with the seed's Python API.

    python examples/benchmark_all_reduce.py                            # one process (a world of one)
    torchrun --nproc_per_node=2 examples/benchmark_all_reduce.py       # every process is one rank

Results go to .benchmarks/collective/all_reduce_ws<N>_<timestamp>.json and .csv (rank 0 writes them).
"""

from __future__ import annotations

from sagellm_comm import get_comm_backend
from sagellm_comm.benchmark import run_all_reduce_benchmark


def main() -> None:
    backend = get_comm_backend("gloo")
    backend.init()  # under torchrun: RANK/WORLD_SIZE/MASTER_ADDR from the environment; alone: rank 0 of 1
    try:
        results = run_all_reduce_benchmark(
            backend=backend,
            message_sizes=[1024, 4096, 16384],  # element counts (float32): 4 KiB, 16 KiB, 64 KiB
            output_dir=".benchmarks/collective",
            warmup_iters=10,
            benchmark_iters=100,
        )
        if backend.get_rank() == 0:
            for r in results:
                print(
                    f"{r.op_type} {r.backend_kind}/{r.algo_id} ws={r.world_size} {r.bytes:>8} B: "
                    f"{r.latency_ms * 1e3:8.1f} us  algbw {r.bandwidth_gbps:.3f} GB/s  "
                    f"busbw {r.bus_bandwidth_gbps:.3f} GB/s"
                )
    finally:
        backend.destroy()


if __name__ == "__main__":
    main()
