"""Move KV-cache blocks from a prefill rank to a decode rank with the rdma backend's transfer engine.

    torchrun --nproc_per_node=2 examples/rdma_kv_transfer.py      # one process per rank
    python examples/rdma_kv_transfer.py                           # starts 2 local ranks itself (the launcher)

Rank 0 (prefill) owns a KV pool of 32 blocks; rank 1 (decode) owns an empty pool. Both register their pool, swap
descriptors through the group, then rank 0 writes blocks 3, 7 and 12 of its pool into slots 0, 1 and 2 of rank 1's
pool as one batch, with a notification. Rank 1 waits for the notification and checks the bytes. Needs
``pip install 'isagellm-comm[rdma]'``.
"""

from __future__ import annotations

import os

import torch

from sagellm_comm import get_comm_backend

BLOCKS, BLOCK_ELEMS = 32, 16 * 8 * 128  # 32 blocks of 16 tokens x 8 heads x 128 dims (fp16: 32 KiB each)
MOVES = [(3, 0), (7, 1), (12, 2)]  # (prefill block, decode slot)


def kv_pool(rank: int) -> torch.Tensor:
    if rank == 0:
        return torch.arange(BLOCKS * BLOCK_ELEMS, dtype=torch.float32).to(torch.float16).reshape(BLOCKS, BLOCK_ELEMS)
    return torch.zeros(BLOCKS, BLOCK_ELEMS, dtype=torch.float16)


def run() -> str:
    comm = get_comm_backend("rdma")
    comm.init_process_group()  # RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from torchrun (or the launcher)
    try:
        eng = comm.transfer_engine
        rank = comm.get_rank()
        pool = kv_pool(rank)
        region = eng.register(pool)  # one region for the whole pool
        peers = eng.exchange([region])  # every rank: the descriptors of every rank's regions
        block_bytes = pool[0].numel() * pool.element_size()
        if rank == 0:
            decode_pool = peers[1][0]
            batch = [(region, src * block_bytes, decode_pool, dst * block_bytes, block_bytes) for src, dst in MOVES]
            handle = eng.write(batch, notify=b"req-42:layer-0")
            handle.wait(timeout=30)  # or poll handle.poll() while computing
            eng.wait_notification(1, b"checked", timeout=30)
            result = f"rank 0: wrote {len(batch)} blocks to rank 1 over {eng.transport(1)}"
        else:
            eng.wait_notification(0, b"req-42:layer-0", timeout=30)  # the batch landed
            want = kv_pool(0)
            for src, dst in MOVES:
                assert torch.equal(pool[dst], want[src]), f"slot {dst} does not hold block {src}"
            assert not pool[len(MOVES) :].any(), "bytes landed outside the slots"
            eng.notify(0, b"checked")
            result = f"rank 1: slots 0-2 hold blocks 3, 7, 12 ({len(MOVES) * block_bytes} bytes checked)"
        eng.deregister(region)
        return result
    finally:
        comm.destroy()


def main() -> None:
    if "RANK" in os.environ:
        print(run())
        return
    from sagellm_comm.launch import launch

    for line in launch(run, 2, timeout=120):
        print(line)


if __name__ == "__main__":
    main()
