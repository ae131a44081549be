"""A peer killed mid-transfer: the initiator gets COMM_P2P_FAILED or COMM_TIMEOUT within its timeout (10 s) and
keeps no registration. Rank 1's engine lives in a process that exits without a goodbye (``os._exit``)."""

from __future__ import annotations

import pytest
import rdma_tasks

from sagellm_comm.launch import RankPool


@pytest.mark.parametrize("mode", ["batch", "send"])
def test_a_peer_killed_mid_transfer_gives_an_error_within_the_timeout(mode: str) -> None:
    with RankPool(2) as pool:
        r0, r1 = pool.run(rdma_tasks.killed_peer, mode, timeout=120)
    assert r1 == {"victim_exit": 0}
    assert r0["codes"] and r0["codes"][0] in ("comm_p2p_failed", "comm_timeout"), r0
    assert r0["seconds"] < 10.0 + 2.0, r0
    assert r0["leaked"] == 0, r0
