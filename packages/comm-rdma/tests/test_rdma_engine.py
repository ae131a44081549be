"""The KV-transfer API of the rdma backend between 2 ranks: registered regions, descriptor exchange, batched
one-sided writes and reads with notifications (bytes checked), the errors a caller can provoke, and point-to-point
beyond the conformance suite (sizes, non-contiguous tensors, mismatches)."""

from __future__ import annotations

import rdma_tasks

T = 120


def test_batched_writes_and_reads_land_where_they_were_aimed(comm_pools) -> None:
    for r in comm_pools.get(2).run(rdma_tasks.engine_round_trip, timeout=T):
        assert r["registrations"] == 0
        # one host: UCX moves the bytes through memory (cma, or sysv/posix shared memory), never a socket
        assert r["transport"].endswith("(intra-node)") and "memory" in r["transport"], r["transport"]


def test_bad_registrations_and_out_of_bounds_transfers_are_refused_before_anything_moves(comm_pools) -> None:
    for seen in comm_pools.get(2).run(rdma_tasks.engine_errors, timeout=T):
        assert seen == [
            f"{case}: invalid_argument"
            for case in (
                "twice",
                "overlap",
                "remote oob",
                "local oob",
                "zero length",
                "negative",
                "not a span",
                "empty",
                "to myself",
                "deregister twice",
                "use deregistered",
            )
        ], seen


def test_point_to_point_sizes_layouts_and_many_small_messages(comm_pools) -> None:
    assert comm_pools.get(2).run(rdma_tasks.p2p_sizes, timeout=T) == [0, 1]


def test_a_mismatched_receive_is_refused_on_both_sides_and_the_lane_survives(comm_pools) -> None:
    sender, receiver = comm_pools.get(2).run(rdma_tasks.p2p_mismatch, timeout=T)
    assert sender == ["dtype: comm_rank_mismatch", "size: comm_rank_mismatch"]
    assert receiver == ["dtype: comm_rank_mismatch", "size: comm_rank_mismatch", "after: ok"]


def test_a_restarted_peer_is_reached_again_and_its_old_regions_are_refused(comm_pools) -> None:
    r0, r1 = comm_pools.get(2).run(rdma_tasks.reconnect_after_restart, timeout=T)
    assert r0 == {"stale": "comm_p2p_failed", "remote_changed": True}
    assert r1 == {"ok": True}


def test_the_receivers_view_of_a_sender_is_reloaded_so_it_does_not_grow_without_bound(comm_pools) -> None:
    r0, r1 = comm_pools.get(2).run(rdma_tasks.p2p_view_reload, timeout=T)
    assert 1 <= r1["loads_since_reload"] <= 8, r1  # 40 messages: reloaded every 8, so never more than 8 held
    assert r0["loads_since_reload"] == 0  # the sender reads nothing
