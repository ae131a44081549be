"""``tools/chaos``: one real gloo trial end to end, usage errors, and the verdict on fabricated trial records (a
survivor that raised too late, not a CommError, wrong data, a hang, a leaked segment or process...)."""

from __future__ import annotations

import copy
import importlib.machinery
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sagellm_comm import is_comm_backend_available
from sagellm_comm_chaos.stream import KINDS, WrongData, op_at, run_op
from sagellm_comm_chaos.verdict import judge, summarize, table

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "chaos"


def _tool():
    loader = importlib.machinery.SourceFileLoader("chaos_tool", str(TOOL))
    spec = importlib.util.spec_from_loader("chaos_tool", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.multirank
@pytest.mark.skipif(not is_comm_backend_available("gloo"), reason="gloo is not available here")
def test_one_gloo_trial_kills_a_rank_and_every_survivor_fails_cleanly_then_regroups(tmp_path: Path) -> None:
    # seed 71 (plan_trial(71, "gloo", 0, 4, 3.0)): the victim is rank 0, the store host (so nobody waits T for its
    # departure), and dies before call #16, amid plain all_reduces: the trial takes about T. Not amid async ops or
    # the isend/irecv ring (the full run covers those).
    report = tmp_path / "chaos.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(TOOL),
            "--backends",
            "gloo",
            "--trials",
            "1",
            "--timeout",
            "3",
            "--seed",
            "71",
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "1/1 trials passed" in proc.stdout
    (trial,) = json.loads(report.read_text())["trials"]
    assert trial["failures"] == [] and trial["death"] is not None and trial["exitcodes"][str(trial["victim"])] == -9
    survivors = [r for r in range(4) if r != trial["victim"]]
    assert sorted(map(int, trial["reports"])) == survivors
    for r in survivors:
        rep = trial["reports"][str(r)]
        assert rep["stream"]["outcome"] == "error" and rep["stream"]["error"]["comm_error"], rep
        assert 0 <= rep["stream"]["at"] - trial["death"]["t"] <= 3 + 1
        assert rep["regroup"]["ok"] and rep["regroup"]["world_size"] == 3
    assert trial["leaked_processes"] == [] and trial["leaked_segments"] == [] and trial["stuck"] == {}


@pytest.mark.parametrize(
    "argv, why",
    [
        (["--world-size", "1"], "--world-size must be at least 2"),
        (["--trials", "0"], "--trials must be at least 1"),
        (["--timeout", "0"], "--timeout must be > 0"),
        (["--backends", ","], "names no backend"),
    ],
)
def test_bad_numbers_exit_2_before_any_process_starts(argv: list[str], why: str, capsys) -> None:
    assert _tool().main(argv) == 2
    assert why in capsys.readouterr().err


# --------------------------------------------------------------------------------------- the verdict, offline
T = 5.0
DEATH = 100.0


def _survivor(rank: int, after: float = 0.06, **error) -> dict:
    err = {
        "type": "CollectiveFailedError",
        "comm_error": True,
        "code": "comm_collective_failed",
        "message": f"group world: rank 1 exited while rank {rank} waited for it",
        "retryable": False,
        **error,
    }
    return {
        "rank": rank,
        "stream": {
            "outcome": "error",
            "ops_done": 3,
            "at_op": "#3 all_reduce float32 x17 sum",
            "at": DEATH + after,
            "error": err,
        },
        "destroy": {"ok": True, "returned": True, "s": 0.01, "error": None},
        "regroup": {"ok": True, "rank": 0, "world_size": 3, "with": "same"},
    }


GOOD = {
    "backend": "shm",
    "trial": 0,
    "seed": 0,
    "world_size": 4,
    "timeout_s": T,
    "victim": 1,
    "stream_cap_s": 21.5,
    "kill": {"mode": "timer", "delay_s": 0.5},
    "death": {"t": DEATH, "how": "timer", "op": "#3 all_reduce float32 x17 sum", "op_index": 3, "inside": True},
    "reports": {str(r): _survivor(r) for r in (0, 2, 3)},
    "exitcodes": {"0": 0, "1": -9, "2": 0, "3": 0},
    "gone": [],
    "stuck": {},
    "leaked_processes": [],
    "leaked_segments": [],
    "wall_s": 3.0,
}


def _with(change) -> dict:
    rec = copy.deepcopy(GOOD)
    change(rec)
    return rec


def test_a_clean_trial_passes_even_when_a_survivor_needs_the_whole_timeout() -> None:
    assert judge(GOOD) == []
    rec = _with(
        lambda r: r["reports"].update({"2": _survivor(2, after=T + 0.99, type="CommTimeoutError", code="comm_timeout")})
    )
    assert judge(rec) == []


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda r: r["reports"].update({"2": _survivor(2, after=T + 1.5, code="comm_timeout")}),
            "rank 2: raised 6.50s after the victim died, past timeout + 1s = 6.0s",
        ),
        (lambda r: r["reports"].update({"3": _survivor(3, after=-0.5)}), "rank 3: raised 0.50s BEFORE the victim died"),
        (
            lambda r: r["reports"].update({"0": _survivor(0, type="RuntimeError", comm_error=False, code=None)}),
            "rank 0: raised RuntimeError (not a CommError)",
        ),
        (
            lambda r: r["reports"].update({"0": _survivor(0, code="comm_rank_mismatch")}),
            "rank 0: raised CommError code comm_rank_mismatch",
        ),
        (
            lambda r: r["reports"]["2"].update(
                {"stream": {"outcome": "wrong_data", "at_op": "#3", "detail": "3 of 17 wrong"}}
            ),
            "rank 2: WRONG DATA without an error: 3 of 17 wrong",
        ),
        (
            lambda r: r["reports"]["2"].update({"stream": {"outcome": "no_error", "ops_done": 900}}),
            "the victim's death went unnoticed",
        ),
        (
            lambda r: r["leaked_segments"].append("sagellm-comm-abc123"),
            "LEAK: region files left behind: sagellm-comm-abc123",
        ),
        (
            lambda r: r["leaked_processes"].append({"rank": 3, "pid": 4242, "phase": "regroup"}),
            "LEAK: rank 3 (pid 4242) still alive after the trial",
        ),
        (
            lambda r: (r["reports"].pop("2"), r["stuck"].update({"2": {"phase": "destroy", "for_s": 41.0}})),
            "HANG: rank 2 still in phase 'destroy'",
        ),
        (
            lambda r: (r["reports"].pop("3"), r["exitcodes"].update({"3": -11})),
            "rank 3: died without a report (exit code -11)",
        ),
        (
            lambda r: r["reports"]["0"].update({"destroy": {"ok": False, "returned": False, "s": 8.0}}),
            "rank 0: destroy() after the error did not return within its bound",
        ),
        (
            lambda r: r["reports"]["3"].update(
                {
                    "regroup": {
                        "ok": False,
                        "error": {"type": "CommTimeoutError", "code": "comm_timeout", "message": "rank 1 never came"},
                    }
                }
            ),
            "rank 3: the fresh group of survivors failed: CommTimeoutError [comm_timeout]",
        ),
        (lambda r: r.update({"death": None}), "victim rank 1 left no death record"),
        (lambda r: r["exitcodes"].update({"1": 0}), "victim rank 1 exited with 0, not by SIGKILL"),
    ],
)
def test_the_verdict_names_each_kind_of_failure(change, expected: str) -> None:
    failures = judge(_with(change))
    assert any(expected in f for f in failures), failures


def test_the_summary_counts_passes_times_and_leaks() -> None:
    late = _with(
        lambda r: r["reports"].update({"2": _survivor(2, after=7.0, type="CommTimeoutError", code="comm_timeout")})
    )
    leaky = _with(lambda r: r["leaked_segments"].append("sagellm-comm-x"))
    records = [copy.deepcopy(GOOD), late, leaky]
    for rec in records:
        rec["failures"] = judge(rec)
    row = summarize(records)["shm"]
    assert (row["trials"], row["passed"], row["leaked_segments"], row["regroup_ok"]) == (3, 1, 1, 3)
    assert row["tte_max_s"] == pytest.approx(7.0) and row["tte_median_s"] == pytest.approx(0.06)
    assert row["codes"] == {"comm_collective_failed": 8, "comm_timeout": 1}
    text = table(summarize(records), T)
    assert "shm" in text and "7.000" in text and "limit: timeout 5s + 1s = 6s" in text


# ------------------------------------------------------------------------------------ the stream's checker
class _OneRank:
    """A world of one: every collective is the identity (a point-to-point ring sends to itself)."""

    capabilities = type(
        "Caps", (), {"ops": frozenset({"all_reduce", "broadcast", "all_gather", "reduce_scatter", "barrier", "send"})}
    )()

    class _Done:
        def wait(self, timeout=None):
            return True

    def __init__(self, corrupt: str = "") -> None:
        self.corrupt, self.sent = corrupt, None

    def _maybe(self, op: str, t: torch.Tensor) -> None:
        if op == self.corrupt:
            t.view(-1)[0] += 1

    def all_reduce(self, t, op="sum", async_op=False):
        self._maybe("all_reduce", t)
        return self._Done() if async_op else t

    def broadcast(self, t, src_rank=0):
        self._maybe("broadcast", t)

    def all_gather(self, t):
        out = t.clone()
        self._maybe("all_gather", out)
        return [out]

    def reduce_scatter(self, out, inp, op="sum"):
        out.copy_(inp)
        self._maybe("reduce_scatter", out)

    def barrier(self):
        pass

    def isend(self, t, dst):
        self.sent = t.clone()
        return self._Done()

    def irecv(self, t, src):
        t.copy_(self.sent)
        self._maybe("irecv", t)
        return self._Done()


def _one_of_each_kind() -> list:
    specs, seen = [], set()
    for i in range(500):
        spec = op_at(7, i, 1, _OneRank.capabilities.ops)
        if spec.kind not in seen:
            seen.add(spec.kind)
            specs.append(spec)
    assert seen == {k for k, _ in KINDS}
    return specs


def test_the_stream_checks_every_result_and_is_the_same_on_every_rank() -> None:
    ops = _OneRank.capabilities.ops
    assert [op_at(3, i, 4, ops) for i in range(50)] == [op_at(3, i, 4, ops) for i in range(50)]
    for spec in _one_of_each_kind():
        run_op(_OneRank(), spec, 0, 1)


@pytest.mark.parametrize("corrupt", ["all_reduce", "broadcast", "all_gather", "reduce_scatter", "irecv"])
def test_a_wrong_result_is_wrong_data(corrupt: str) -> None:
    kinds = {"all_reduce": ("all_reduce", "all_reduce_async"), "irecv": ("p2p_ring",)}.get(corrupt, (corrupt,))
    for spec in _one_of_each_kind():
        if spec.kind in kinds:
            with pytest.raises(WrongData, match="elements wrong"):
                run_op(_OneRank(corrupt), spec, 0, 1)
