"""Mismatched point-to-point on gloo: gloo moves raw bytes, so before the message headers a receive of another dtype
returned the sender's bytes reinterpreted, a larger one a partly filled tensor (both without an error) and a smaller
one aborted the process (gloo::EnforceNotMet)."""

from __future__ import annotations

import gloo_tasks


def test_a_mismatched_receive_raises_and_the_process_and_lane_survive(comm_pools) -> None:
    sender, receiver = comm_pools.get(2).run(gloo_tasks.mismatched_receives, "gloo", timeout=120)
    assert sender == []
    assert receiver == ["0: mismatch", "1: mismatch", "2: mismatch", "3: mismatch"]


def test_debug_mode_turns_a_collective_mismatch_into_an_error_on_every_rank(comm_pools) -> None:
    """A size mismatch handed to gloo aborts the process (gloo::EnforceNotMet); SAGELLM_COMM_DEBUG=detail checks the
    calls first."""
    r0, r1 = comm_pools.get(2).run(gloo_tasks.mismatched_collectives_in_debug_mode, timeout=120)
    cases = ["size: mismatch", "root: mismatch", "op: mismatch", "async size: mismatch"]
    assert r1 == cases, r1
    assert r0 == [*cases, "straggler: named"], r0


def test_a_timeout_writes_the_flight_recorder_and_merge_names_the_straggler(tmp_path, capsys) -> None:
    from sagellm_comm.cli.main import main
    from sagellm_comm.launch import RankPool

    with RankPool(2) as pool:
        r0, r1 = pool.run(gloo_tasks.straggler_then_dump, str(tmp_path), timeout=120)
    assert r0.startswith("comm_timeout -> ") and r0.endswith(".json"), r0
    assert main(["trace", "merge", r0.split(" -> ")[1], r1]) == 1
    out = capsys.readouterr().out
    assert "world #1: ok" in out and "all_reduce float32 x16 sum [done]" in out
    assert "world #3: ok" in out and "[done async]" in out
    assert "first divergence: group world call #4: NOT REACHED by rank 1" in out
    assert "barrier [timeout]" in out


def test_debug_mode_checks_point_to_point_on_engines_without_headers(comm_pools) -> None:
    """Engines whose messages carry no dtype (NCCL, HCCL; here gloo with its headers off): a receive into another
    dtype is garbage without an error, unless SAGELLM_COMM_DEBUG=detail, which raises on the receiver."""
    pool = comm_pools.get(2)
    _, plain = pool.run(gloo_tasks.headerless_p2p, False, timeout=120)
    assert plain == [
        "0 ok: right",
        "1 recv: garbage, no error",
        "2 ok: right",
        "3 irecv: garbage, no error",
        "4 ok: right",
    ], plain
    _, debug = pool.run(gloo_tasks.headerless_p2p, True, timeout=120)
    assert debug == ["0 ok: right", "1 recv: mismatch", "2 ok: right", "3 irecv: mismatch", "4 ok: right"], debug
