"""sagellm-kv-cache's real ``KVTransferEngine`` (the published isagellm-kv-cache wheel, installed without its
dependency on the old isagellm-comm) driven with ``get_comm_backend("rdma")`` between 2 ranks, bytes checked."""

from __future__ import annotations

import rdma_tasks


def test_kv_transfer_engine_moves_a_kv_tensor_over_rdma(comm_pools) -> None:
    r0, r1 = comm_pools.get(2).run(rdma_tasks.kv_cache_engine, timeout=120)
    assert r0 == {"rank": 0}
    assert r1 == {"rank": 1, "completed": 1}
