"""The verdict on a trial record (pure functions: the tests feed them fabricated records) and the summary table.

A trial passes when:

- the victim died as planned (its death time is known, it exited by SIGKILL);
- every survivor reported (none stuck past the trial's deadline, none died);
- each survivor raised a ``CommError`` with one of ``EXPECTED_CODES``, never another exception type, never a
  wrong result, and no earlier than the victim's death;
- each did so within ``timeout + GRACE_S`` of the death;
- ``destroy()`` returned, without error, within its bound;
- the fresh group of the survivors (same processes) initialized and gave the right all_reduce and broadcast;
- no rank process was still alive after the trial, and no region file was left in the region directory.
"""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["EXPECTED_CODES", "GRACE_S", "judge", "summarize", "table", "time_to_error"]

EXPECTED_CODES = frozenset({"comm_timeout", "comm_collective_failed", "comm_p2p_failed"})
GRACE_S = 1.0
EARLY_S = 0.05  # clock granularity: an error this much "before" the death still counts as after it
SIGKILL_EXIT = -9


def survivors(record: dict[str, Any]) -> list[int]:
    return [r for r in range(record["world_size"]) if r != record["victim"]]


def time_to_error(record: dict[str, Any], rank: int) -> float | None:
    death = record.get("death")
    stream = record.get("reports", {}).get(str(rank), {}).get("stream") or {}
    if not death or "at" not in stream:
        return None
    return float(stream["at"]) - float(death["t"])


def _judge_survivor(record: dict[str, Any], r: int, limit: float) -> list[str]:
    rep = record["reports"][str(r)]
    if "crash" in rep:
        return [f"rank {r}: the rank's own code failed: {rep['crash']['type']}: {rep['crash']['message']}"]
    out: list[str] = []
    st = rep.get("stream") or {}
    outcome = st.get("outcome")
    if outcome == "wrong_data":
        out.append(f"rank {r}: WRONG DATA without an error: {st.get('detail')}")
    elif outcome == "no_error":
        out.append(
            f"rank {r}: no error within {record.get('stream_cap_s')}s of its stream (ran {st.get('ops_done')} "
            "calls): the victim's death went unnoticed"
        )
    elif outcome == "error":
        e = st["error"]
        if not e.get("comm_error"):
            out.append(f"rank {r}: raised {e['type']} (not a CommError) in {st.get('at_op')}: {e['message'][:200]}")
        elif e.get("code") not in EXPECTED_CODES:
            out.append(
                f"rank {r}: raised CommError code {e.get('code')} in {st.get('at_op')} (expected one of "
                f"{', '.join(sorted(EXPECTED_CODES))}): {e['message'][:200]}"
            )
        tte = time_to_error(record, r)
        if tte is not None and tte > limit:
            out.append(
                f"rank {r}: raised {tte:.2f}s after the victim died, past timeout + {GRACE_S:.0f}s = "
                f"{limit:.1f}s ({e.get('code') or e['type']} in {st.get('at_op')})"
            )
        if tte is not None and tte < -EARLY_S:
            out.append(
                f"rank {r}: raised {-tte:.2f}s BEFORE the victim died ({e.get('code') or e['type']}: "
                f"{e['message'][:200]})"
            )
    else:
        out.append(f"rank {r}: reported no stream outcome")
    d = rep.get("destroy")
    if d is not None and not d.get("ok"):
        why = "did not return within its bound" if not d.get("returned") else f"raised {d.get('error')}"
        out.append(f"rank {r}: destroy() after the error {why} ({d.get('s', 0):.1f}s)")
    g = rep.get("regroup")
    if d is not None and d.get("returned") and not (g or {}).get("ok"):
        e = (g or {}).get("error") or (g or {}).get("destroy_error") or {}
        out.append(
            f"rank {r}: the fresh group of survivors failed: {e.get('type')} [{e.get('code')}] "
            f"{str(e.get('message'))[:200]}"
        )
    return out


def judge(record: dict[str, Any]) -> list[str]:
    """Every reason ``record`` fails (empty: the trial passed)."""
    failures: list[str] = []
    limit = float(record["timeout_s"]) + GRACE_S
    v = record["victim"]
    if not record.get("death"):
        failures.append(f"victim rank {v} left no death record (it never reached its kill point {record['kill']})")
    code = record.get("exitcodes", {}).get(str(v))
    if code != SIGKILL_EXIT and str(v) not in record.get("stuck", {}):
        failures.append(f"victim rank {v} exited with {code}, not by SIGKILL")
    for r_s, s in sorted(record.get("stuck", {}).items()):
        failures.append(f"HANG: rank {r_s} still in phase '{s['phase']}' after {s['for_s']}s at the trial deadline")
    for r in survivors(record):
        if str(r) in record.get("stuck", {}):
            continue
        if str(r) not in record.get("reports", {}):
            failures.append(f"rank {r}: died without a report (exit code {record['exitcodes'].get(str(r))})")
            continue
        failures.extend(_judge_survivor(record, r, limit))
    for p in record.get("leaked_processes", []):
        failures.append(
            f"LEAK: rank {p['rank']} (pid {p['pid']}) still alive after the trial (last phase '{p['phase']}')"
        )
    if record.get("leaked_segments"):
        failures.append(f"LEAK: region files left behind: {', '.join(record['leaked_segments'])}")
    return failures


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per backend: trials, passes, time to error (max, median), regroups, leaks, hangs, error codes seen."""
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        row = out.setdefault(
            rec["backend"],
            {
                "trials": 0,
                "passed": 0,
                "tte": [],
                "regroup_ok": 0,
                "leaked_segments": 0,
                "leaked_processes": 0,
                "hangs": 0,
                "codes": {},
                "wall_s": 0.0,
            },
        )
        row["trials"] += 1
        row["passed"] += not rec.get("failures")
        row["wall_s"] += rec.get("wall_s", 0.0)
        row["leaked_segments"] += len(rec.get("leaked_segments", []))
        row["leaked_processes"] += len(rec.get("leaked_processes", []))
        row["hangs"] += len(rec.get("stuck", {}))
        reps = rec.get("reports", {})
        ok = [(reps.get(str(r)) or {}).get("regroup", {}).get("ok") for r in survivors(rec)]
        row["regroup_ok"] += bool(ok) and all(ok)
        for r in survivors(rec):
            tte = time_to_error(rec, r)
            if tte is not None:
                row["tte"].append(tte)
            st = (reps.get(str(r)) or {}).get("stream") or {}
            if st.get("outcome") == "error":
                key = st["error"].get("code") or st["error"]["type"]
                row["codes"][key] = row["codes"].get(key, 0) + 1
    for row in out.values():
        tte = row.pop("tte")
        row["tte_max_s"] = max(tte) if tte else None
        row["tte_median_s"] = statistics.median(tte) if tte else None
        row["wall_s"] = round(row["wall_s"], 1)
    return out


def table(summary: dict[str, dict[str, Any]], timeout_s: float) -> str:
    def secs(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    head = (
        f"{'backend':<8} {'trials':>6} {'passed':>6} {'max tte s':>9} {'median':>7} {'regroup ok':>10} "
        f"{'leaked seg':>10} {'leaked proc':>11} {'hangs':>5}  errors seen"
    )
    lines = [f"time to error (tte) limit: timeout {timeout_s:g}s + {GRACE_S:g}s = {timeout_s + GRACE_S:g}s", head]
    for name, row in summary.items():
        codes = ", ".join(f"{k} x{v}" for k, v in sorted(row["codes"].items()))
        lines.append(
            f"{name:<8} {row['trials']:>6} {row['passed']:>6} {secs(row['tte_max_s']):>9} "
            f"{secs(row['tte_median_s']):>7} {row['regroup_ok']:>10} {row['leaked_segments']:>10} "
            f"{row['leaked_processes']:>11} {row['hangs']:>5}  {codes}"
        )
    return "\n".join(lines)
