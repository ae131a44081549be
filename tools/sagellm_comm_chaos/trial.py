"""Plan and run one chaos trial from the parent: start the ranks, collect what they report, look for leftovers.

``plan_trial`` is a pure function of (seed, backend, trial number): which rank dies and when. ``run_trial`` starts
the ranks from the forkserver (``forkserver.py``), waits for every survivor's report under a hard deadline, names a
stuck rank with its phase and its stacks (faulthandler on SIGUSR1), kills what is left, and compares the region
directory before and after. The record it returns is judged by ``verdict.judge``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import tempfile
import time
from multiprocessing.connection import wait
from typing import Any

from sagellm_comm.launch.ports import free_port
from sagellm_comm_chaos.rank import rank_main

__all__ = ["limits", "plan_trial", "run_trial", "segments"]

KILL_OPS = 40  # mode "op": the victim dies before a call drawn from 0..KILL_OPS-1
KILL_DELAY_S = 1.5  # mode "timer": it dies 0..KILL_DELAY_S s after its stream started
EXIT_GRACE_S = 5.0  # a rank that reported must have exited this long after the last report
SEGMENT_PREFIX = "sagellm-comm-"


def limits(timeout_s: float) -> dict[str, float]:
    """Bounds derived from the group timeout T. The fresh group's rendezvous must outwait the slowest survivor: it
    may raise only at T (+1 s), then spend up to T in destroy() (the rank hosting the store waits that long for the
    dead rank to depart), hence 3T + 5 s. The trial's hard deadline adds every phase's bound and 30 s of slack."""
    t = timeout_s
    init, error, destroy, regroup = t, t + 1.0, t + 3.0, 3 * t + 5.0
    return {
        "destroy_limit_s": destroy,
        "regroup_timeout_s": regroup,
        "stream_cap_s": KILL_DELAY_S + 2 * t + 10.0,
        "deadline_s": init + KILL_DELAY_S + error + destroy + regroup + destroy + 30.0,
    }


def plan_trial(seed: int, backend: str, index: int, world_size: int, timeout_s: float) -> dict[str, Any]:
    rng = random.Random(f"chaos-trial:{seed}:{backend}:{index}")
    victim = rng.randrange(world_size)
    if rng.random() < 0.5:
        kill: dict[str, Any] = {"mode": "op", "after_ops": rng.randrange(KILL_OPS)}
    else:
        kill = {"mode": "timer", "delay_s": round(rng.uniform(0.0, KILL_DELAY_S), 3)}
    stream_seed = rng.randrange(1 << 31)
    # the fresh group: init_process_group again on the destroyed backend object (what its error message advises),
    # or on a new one from get_comm_backend; both must work
    regroup_with = rng.choice(("same", "new"))
    return {
        "backend": backend,
        "trial": index,
        "seed": seed,
        "world_size": world_size,
        "timeout_s": timeout_s,
        "victim": victim,
        "kill": kill,
        "stream_seed": stream_seed,
        "regroup_with": regroup_with,
        **limits(timeout_s),
    }


def segments(directory: str) -> set[str]:
    try:
        return {n for n in os.listdir(directory) if n.startswith(SEGMENT_PREFIX)}
    except FileNotFoundError:
        return set()


def _ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port("127.0.0.1")
        if p not in ports:
            ports.append(p)
    return ports


class _Ranks:
    """The processes of one trial and what came back from them."""

    def __init__(self, ctx: Any, plan: dict[str, Any]) -> None:
        self.plan, self.start = plan, time.monotonic()
        self.procs: dict[int, Any] = {}
        self.conns: dict[int, Any] = {}
        try:
            for r in range(plan["world_size"]):
                parent, child = ctx.Pipe(duplex=False)
                self.conns[r] = parent
                p = ctx.Process(target=rank_main, args=(plan, r, child), name=f"chaos-{plan['backend']}-rank{r}")
                p.start()
                child.close()
                self.procs[r] = p
        except BaseException:
            self.kill()
            raise
        self.phases: dict[int, tuple[str, float]] = {r: ("started", self.start) for r in self.procs}
        self.timeline: dict[str, list[Any]] = {str(r): [] for r in self.procs}
        self.reports: dict[int, dict[str, Any]] = {}
        self.gone: set[int] = set()  # closed their pipe without a report (killed, crashed)
        self.stuck: dict[int, dict[str, Any]] = {}
        self.exited_at: dict[str, float] = {}
        self.leaked: list[dict[str, Any]] = []

    def rel(self, t: float) -> float:
        return round(t - self.start, 3)

    def stacks(self, r: int) -> str:
        try:
            with open(os.path.join(self.plan["workdir"], f"stacks-rank{r}.txt")) as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def dump_stacks(self, ranks: list[int]) -> dict[int, str]:
        """faulthandler's stacks of ``ranks`` (the ranks registered it on SIGUSR1)."""
        for r in ranks:
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(self.procs[r].pid, signal.SIGUSR1)
        if ranks:
            time.sleep(0.5)
        return {r: self.stacks(r) for r in ranks}

    def collect(self) -> None:
        """Read phases and reports until every survivor reported and the victim's pipe closed, or the deadline."""
        victim, open_conns = self.plan["victim"], dict(self.conns)
        waiting = set(self.procs) - {victim}
        deadline = self.start + self.plan["deadline_s"]
        while (waiting or victim in open_conns) and time.monotonic() < deadline:
            for c in wait(list(open_conns.values()), timeout=max(0.0, deadline - time.monotonic())):
                r = next(k for k, v in open_conns.items() if v is c)
                try:
                    msg = c.recv()
                except (EOFError, OSError):
                    del open_conns[r]
                    if r not in self.reports:
                        self.gone.add(r)
                    waiting.discard(r)
                    continue
                if msg[0] == "phase":
                    self.phases[r] = (msg[1], msg[2])
                    self.timeline[str(r)].append([msg[1], self.rel(msg[2])])
                else:
                    self.reports[r] = {**msg[1], "reported_at_s": self.rel(time.monotonic())}
                    waiting.discard(r)
        stuck = sorted(waiting | ({victim} & set(open_conns)))
        now = time.monotonic()
        self.stuck = {r: {"phase": self.phases[r][0], "for_s": round(now - self.phases[r][1], 2)} for r in stuck}
        for r, text in self.dump_stacks(stuck).items():
            self.stuck[r]["stacks"] = text

    def reap(self) -> None:
        """Every rank that did not hang must exit within EXIT_GRACE_S; what is still alive then is a leak."""
        until = time.monotonic() + EXIT_GRACE_S
        pending = {p.sentinel: r for r, p in self.procs.items() if r not in self.stuck}
        while pending and time.monotonic() < until:
            for s in wait(list(pending), timeout=max(0.0, until - time.monotonic())):
                self.exited_at[str(pending.pop(s))] = self.rel(time.monotonic())
        alive = [r for r in pending.values() if self.procs[r].is_alive()]
        for r, text in self.dump_stacks(alive).items():
            self.leaked.append({"rank": r, "pid": self.procs[r].pid, "phase": self.phases[r][0], "stacks": text})

    def kill(self) -> None:
        """SIGKILL whatever is left (hung or leaked ranks) and reap it."""
        for p in self.procs.values():
            if p.is_alive():
                p.kill()
            p.join(5.0)
        for c in self.conns.values():
            c.close()


def run_trial(ctx: Any, plan: dict[str, Any], shm_dir: str, trace_dir: str | None = None) -> dict[str, Any]:
    """Run one planned trial; the record holds the plan, what each rank reported and what was left behind.
    ``shm_dir``: the region directory the ranks use (and that is checked for leftovers); ``trace_dir``: where their
    flight recorders write on a timeout."""
    workdir = tempfile.mkdtemp(prefix="sagellm-chaos-trial-")
    master, regroup = _ports(2)
    plan = {
        **plan,
        "master_port": master,
        "regroup_port": regroup,
        "workdir": workdir,
        "shm_dir": shm_dir,
        "trace_dir": trace_dir,
    }
    before = segments(shm_dir)
    ranks = _Ranks(ctx, plan)  # from here on, nothing it started survives this function
    try:
        ranks.collect()
        ranks.reap()
    finally:
        ranks.kill()
    # counted, never removed: in a shared directory (--shm-dir /dev/shm) a new name may be another job's region
    # between its creation and its last mapping; tools/chaos removes its own private directory at the end
    left = sorted(segments(shm_dir) - before)
    death = None
    with contextlib.suppress(OSError, ValueError), open(os.path.join(workdir, "death.json")) as f:
        death = json.load(f)
    shutil.rmtree(workdir, ignore_errors=True)
    plan.pop("workdir")
    return {
        **plan,
        "death": death,
        "reports": {str(r): ranks.reports[r] for r in sorted(ranks.reports)},
        "exitcodes": {str(r): p.exitcode for r, p in ranks.procs.items()},
        "gone": sorted(ranks.gone),
        "stuck": {str(r): s for r, s in ranks.stuck.items()},
        "leaked_processes": ranks.leaked,
        "leaked_segments": left,
        "timeline": ranks.timeline,
        "exited_at_s": ranks.exited_at,
        "wall_s": round(time.monotonic() - ranks.start, 3),
    }
