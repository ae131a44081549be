"""``python -m benchmark.reliability_costs``: what the always-on checks cost, beside the raw engine in the same run.

- shm all_reduce (its steps carry call tags) at 4 B and 64 KiB;
- gloo send/recv one-way latency (messages carry a dtype/size frame) at 4 B and 1 MiB, and raw
  ``torch.distributed`` send/recv on the same Gloo group as the floor.

Two local ranks; medians of 7 blocks of back-to-back calls after a barrier, in microseconds. Time it with nothing
else running.
"""

from __future__ import annotations

import json
import statistics
import time

import torch

from sagellm_comm.launch import launch


def _median_us(run, calls: int, blocks: int, barrier) -> float:
    run(max(1, calls // 10))
    per = []
    for _ in range(blocks):
        barrier()
        start = time.perf_counter()
        run(calls)
        per.append((time.perf_counter() - start) / calls * 1e6)
    return round(statistics.median(per), 1)


def _ping_pong(send, recv, rank: int, t: torch.Tensor):
    """``k`` round trips between ranks 0 and 1 through ``send(tensor, peer)`` / ``recv(tensor, peer)``."""

    def run(k: int) -> None:
        for _ in range(k):
            if rank == 0:
                send(t, 1)
                recv(t, 1)
            else:
                recv(t, 0)
                send(t, 0)

    return run


def _rank(blocks: int = 7) -> dict:
    import torch.distributed as dist

    from sagellm_comm import get_comm_backend

    out: dict = {}
    shm = get_comm_backend("shm")
    shm.init_process_group(timeout=60)
    for nbytes in (4, 64 << 10):
        t = torch.ones(nbytes // 4)
        out[f"shm all_reduce {nbytes} B"] = _median_us(
            lambda k, t=t: [shm.all_reduce(t) for _ in range(k)], 3000, blocks, shm.barrier
        )
    shm.destroy()
    gloo = get_comm_backend("gloo")
    gloo.init_process_group(timeout=60)
    rank = gloo.get_rank()
    for nbytes in (4, 1 << 20):
        t = torch.ones(nbytes // 4)
        calls = 1000 if nbytes < 4096 else 100

        ours = _ping_pong(gloo.send, gloo.recv, rank, t)
        raw = _ping_pong(lambda x, peer: dist.send(x, peer), lambda x, peer: dist.recv(x, peer), rank, t)

        # a round trip is two one-way messages
        out[f"gloo send/recv one-way {nbytes} B"] = _median_us(ours, calls, blocks, gloo.barrier) / 2
        out[f"raw torch.distributed gloo one-way {nbytes} B"] = _median_us(raw, calls, blocks, gloo.barrier) / 2
    gloo.destroy()
    return out


def main() -> None:
    results = launch(_rank, 2, timeout=600)[0]
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
