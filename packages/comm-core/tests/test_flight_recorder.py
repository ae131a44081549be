"""The flight recorder's ring and the merge of several ranks' dumps (no ranks needed: dumps are plain data)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.trace import FlightRecorder, merge_traces

WORLD = SimpleNamespace(group_id="world")


def _run(rec: FlightRecorder, numel: int, state: str = "done") -> None:
    rec.finish(rec.start(WORLD, "all_reduce", (torch.ones(numel), ReduceOp.SUM, WORLD, False), False), state)


def test_the_ring_keeps_the_last_n_and_dumps_json(tmp_path) -> None:
    rec = FlightRecorder("gloo", entries=3)
    rec.rank, rec.world_size = 1, 2
    for n in range(5):
        _run(rec, n + 1)
    data = json.loads(rec.dump(tmp_path / "t.json").read_text())
    assert [e["seq"] for e in data["entries"]] == [3, 4, 5]
    assert data["entries"][0]["signature"] == "all_reduce float32 x3 sum" and data["rank"] == 1


def test_merge_names_the_straggler_and_the_mismatch_and_ignores_evicted_calls() -> None:
    a, b = FlightRecorder("gloo", entries=2), FlightRecorder("gloo", entries=8)
    a.rank, b.rank = 0, 1
    for n in (4, 4, 4):  # rank 0 keeps calls 2-3 only
        _run(a, n)
    for n in (4, 4, 8):  # rank 1: call 3 differs
        _run(b, n)
    _run(a, 4, "timeout")  # rank 0 alone reaches call 4
    ranks, rows = merge_traces([a.snapshot(), b.snapshot()])
    verdicts = {r["seq"]: r["verdict"] for r in rows}
    assert ranks == [0, 1]
    assert verdicts == {1: "ok", 2: "ok", 3: "MISMATCH", 4: "NOT REACHED by rank 1"}, verdicts


def test_off_records_nothing() -> None:
    rec = FlightRecorder("shm", entries=0)
    assert not rec.enabled and rec.start(WORLD, "barrier", (WORLD,), False) is None
