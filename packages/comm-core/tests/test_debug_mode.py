"""The debug mode's call fingerprints: what must match across ranks and what may legitimately differ."""

from __future__ import annotations

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.debug import debug_detail, fingerprint


def test_fingerprints_carry_dtype_size_roots_and_reduce_op() -> None:
    t = torch.ones(4)
    assert fingerprint("all_reduce", (t, ReduceOp.SUM, object(), False)) == "all_reduce float32 x4 sum"
    assert fingerprint("broadcast", (t, 1, object(), True)) == "broadcast float32 x4 rank 1"
    assert fingerprint("all_reduce", (torch.ones(8), ReduceOp.SUM)) != fingerprint("all_reduce", (t, ReduceOp.SUM))


def test_what_may_differ_between_ranks_is_left_out() -> None:
    t = torch.ones(4)
    root_side = fingerprint("gather", (t, [torch.ones(4), torch.ones(4)], 0, object(), False))
    other_side = fingerprint("gather", (t, None, 0, object(), True))
    assert root_side == other_side == "gather float32 x4 rank 0", "gather_list and async_op differ by rank"
    assert fingerprint("barrier", (object(), False, 3.0)) == "barrier"


def test_the_switch(monkeypatch) -> None:
    monkeypatch.delenv("SAGELLM_COMM_DEBUG", raising=False)
    assert not debug_detail()
    monkeypatch.setenv("SAGELLM_COMM_DEBUG", "detail")
    assert debug_detail()
