"""Mismatched point-to-point on gloo: gloo moves raw bytes, so before the message headers a receive of another dtype
returned the sender's bytes reinterpreted, a larger one a partly filled tensor (both without an error) and a smaller
one aborted the process (gloo::EnforceNotMet)."""

from __future__ import annotations

import gloo_tasks


def test_a_mismatched_receive_raises_and_the_process_and_lane_survive(comm_pools) -> None:
    sender, receiver = comm_pools.get(2).run(gloo_tasks.mismatched_receives, "gloo", timeout=120)
    assert sender == []
    assert receiver == ["0: mismatch", "1: mismatch", "2: mismatch", "3: mismatch"]
