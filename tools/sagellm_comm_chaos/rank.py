"""One rank of a chaos trial (runs in a process the forkserver forked; ``rank_main`` is its target).

Every rank joins the world and runs the seeded stream (``stream.py``). The victim SIGKILLs itself at the planned
moment: before call ``after_ops`` (mode ``op``) or from a timer thread ``delay_s`` after the stream started (mode
``timer``, usually inside a call); just before, it writes ``time.monotonic()`` (system-wide on Linux) and the call
it was at to ``death.json``. A survivor runs the stream until it raises, then destroys its backend (bounded),
forms a fresh group of the survivors in the same process (the same backend object or a new one, as planned; new
world size and ranks, a new port handed out by the parent), checks an all_reduce and a broadcast on it, destroys
it and sends its report.

Messages to the parent over ``conn``: ``("phase", name, t)`` as the rank moves on (so a stuck rank is named with
its phase), then ``("report", dict)``.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import threading
import time
import traceback
from typing import Any

import torch

import sagellm_comm
from sagellm_comm_chaos.stream import WrongData, op_at, run_op

__all__ = ["rank_main"]

_AT: dict[str, Any] = {"op": None, "inside": False}  # where the victim's main thread is (read by the timer)


def _die(workdir: str, how: str) -> None:
    spec = _AT["op"]
    record = {
        "t": time.monotonic(),
        "how": how,
        "op": spec.describe() if spec is not None else None,
        "op_index": spec.index if spec is not None else -1,
        "inside": bool(_AT["inside"]),
    }
    fd = os.open(os.path.join(workdir, "death.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, json.dumps(record).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def _describe(exc: BaseException) -> dict[str, Any]:
    code = getattr(exc, "code", None)
    return {
        "type": type(exc).__name__,
        "comm_error": isinstance(exc, sagellm_comm.CommError),
        "code": getattr(code, "value", None if code is None else str(code)),
        "message": str(getattr(exc, "message", exc))[:600],
        "retryable": getattr(exc, "retryable", None),
    }


def _bounded(fn: Any, limit_s: float) -> tuple[bool, float, dict[str, Any] | None]:
    """``fn()`` on a helper thread, waited for at most ``limit_s``: (returned in time, seconds, its error)."""
    box: list[Any] = []
    start = time.monotonic()

    def call() -> None:
        try:
            fn()
            box.append(None)
        except BaseException as exc:
            box.append(_describe(exc))

    t = threading.Thread(target=call, name="chaos-bounded", daemon=True)
    t.start()
    t.join(limit_s)
    return bool(box), time.monotonic() - start, box[0] if box else None


def _run_stream(comm: Any, plan: dict[str, Any], rank: int, victim: bool, conn: Any) -> dict[str, Any]:
    ops = comm.capabilities.ops
    ws, seed, kill = plan["world_size"], plan["stream_seed"], plan["kill"]
    conn.send(("phase", "stream", time.monotonic()))
    start = time.monotonic()
    if victim and kill["mode"] == "timer":
        timer = threading.Timer(kill["delay_s"], _die, args=(plan["workdir"], "timer"))
        timer.daemon = True
        timer.start()
    i = 0
    while True:
        spec = op_at(seed, i, ws, ops)
        _AT["op"] = spec
        if victim and kill["mode"] == "op" and i == kill["after_ops"]:
            _die(plan["workdir"], "op")
        if not victim and time.monotonic() - start > plan["stream_cap_s"]:
            return {"outcome": "no_error", "ops_done": i, "at_op": spec.describe()}
        _AT["inside"] = True
        try:
            run_op(comm, spec, rank, ws)
        except WrongData as exc:
            return {
                "outcome": "wrong_data",
                "ops_done": i,
                "at_op": spec.describe(),
                "detail": str(exc),
                "at": time.monotonic(),
            }
        except BaseException as exc:
            now = time.monotonic()
            return {
                "outcome": "error",
                "ops_done": i,
                "at_op": spec.describe(),
                "at": now,
                "error": _describe(exc),
                "traceback": traceback.format_exc()[-2000:],
            }
        finally:
            _AT["inside"] = False
        i += 1


def _regroup(comm: Any, plan: dict[str, Any], rank: int) -> dict[str, Any]:
    survivors = sorted(r for r in range(plan["world_size"]) if r != plan["victim"])
    n, me = len(survivors), survivors.index(rank)
    start = time.monotonic()
    out: dict[str, Any] = {"ok": False, "rank": me, "world_size": n, "with": plan["regroup_with"]}
    if plan["regroup_with"] == "new":
        comm = sagellm_comm.get_comm_backend(plan["backend"])
    try:
        comm.init_process_group(
            world_size=n,
            rank=me,
            master_addr="127.0.0.1",
            master_port=plan["regroup_port"],
            timeout=plan["regroup_timeout_s"],
        )
        out["init_s"] = time.monotonic() - start
        x = torch.full((1000,), float(me + 1))
        comm.all_reduce(x)
        if not torch.equal(x, torch.full((1000,), float(n * (n + 1) // 2))):
            out["error"] = {"type": "WrongData", "message": f"all_reduce gave {x[:4].tolist()}..."}
            return out
        b = torch.arange(64, dtype=torch.int32) if me == n - 1 else torch.zeros(64, dtype=torch.int32)
        comm.broadcast(b, src_rank=n - 1)
        if not torch.equal(b, torch.arange(64, dtype=torch.int32)):
            out["error"] = {"type": "WrongData", "message": f"broadcast gave {b[:4].tolist()}..."}
            return out
    except BaseException as exc:
        out["error"] = _describe(exc)
        out["traceback"] = traceback.format_exc()[-2000:]
        return out
    finally:
        done, secs, err = _bounded(comm.destroy, plan["destroy_limit_s"])
        out["destroy_s"], out["destroy_ok"] = secs, done and err is None
        if err is not None:
            out["destroy_error"] = err
    out["ok"] = out["destroy_ok"]
    out["total_s"] = time.monotonic() - start
    return out


def rank_main(plan: dict[str, Any], rank: int, conn: Any) -> None:
    """Entry point of one rank; everything it sees goes to the parent through ``conn``."""
    stacks = open(os.path.join(plan["workdir"], f"stacks-rank{rank}.txt"), "w")  # noqa: SIM115 (open for life)
    faulthandler.register(signal.SIGUSR1, file=stacks, all_threads=True)
    torch.set_num_threads(1)
    if plan.get("shm_dir"):
        os.environ["SAGELLM_COMM_SHM_DIR"] = plan["shm_dir"]
    if plan.get("trace_dir"):
        os.environ["SAGELLM_COMM_TRACE_DIR"] = plan["trace_dir"]  # flight-recorder dumps on timeouts
    victim = rank == plan["victim"]
    report: dict[str, Any] = {"rank": rank, "pid": os.getpid()}
    try:
        conn.send(("phase", "init", time.monotonic()))
        comm = sagellm_comm.get_comm_backend(plan["backend"])
        t0 = time.monotonic()
        try:
            comm.init_process_group(
                world_size=plan["world_size"],
                rank=rank,
                master_addr="127.0.0.1",
                master_port=plan["master_port"],
                timeout=plan["timeout_s"],
            )
        except BaseException as exc:
            # a victim that dies at once (call #0, timer at 0 s) may find a peer still joining: its error is judged
            # like any other (code, and time after the death; before the death it is a failure of its own)
            report["stream"] = {
                "outcome": "error",
                "ops_done": 0,
                "at_op": "init_process_group",
                "at": time.monotonic(),
                "error": _describe(exc),
                "traceback": traceback.format_exc()[-2000:],
            }
        else:
            report["init_s"] = time.monotonic() - t0
            report["stream"] = _run_stream(comm, plan, rank, victim, conn)
        if victim:
            return  # the victim's stream ended before its kill: the verdict says so
        conn.send(("phase", "destroy", time.monotonic()))
        done, secs, err = _bounded(comm.destroy, plan["destroy_limit_s"])
        report["destroy"] = {"ok": done and err is None, "returned": done, "s": secs, "error": err}
        if not done:
            return  # still inside destroy: a fresh init on this object would race it
        conn.send(("phase", "regroup", time.monotonic()))
        report["regroup"] = _regroup(comm, plan, rank)
    except BaseException as exc:
        report["crash"] = _describe(exc)
        report["traceback"] = traceback.format_exc()[-2000:]
    finally:
        try:
            conn.send(("report", report))
            conn.close()
        except OSError:
            pass
