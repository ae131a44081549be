"""``RankPool``: N rank processes kept alive across calls; ``launch``: one call on a fresh pool."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import wait
from typing import Any

from sagellm_comm.errors import InvalidArgumentError
from sagellm_comm.job import JOB_TOKEN_ENV, new_token
from sagellm_comm.launch.errors import RankDeadlineError, RankFailedError
from sagellm_comm.launch.ports import free_port
from sagellm_comm.launch.worker import STACK_SIGNAL, worker_loop

__all__ = ["MAX_LOCAL_RANKS", "RankPool", "launch"]

MAX_LOCAL_RANKS = 64
# after one rank fails, how long the others get to finish on their own before the pool is torn down
FAILURE_GRACE_S = 3.0


class RankPool:
    """``world_size`` spawned rank processes with the torchrun environment set; ``run`` executes a function on
    all of them. ``fn`` must be importable by name (a module-level function)."""

    def __init__(
        self,
        world_size: int,
        *,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 120.0,
        master_addr: str = "127.0.0.1",
    ) -> None:
        if isinstance(world_size, bool) or not isinstance(world_size, int) or not 1 <= world_size <= MAX_LOCAL_RANKS:
            raise InvalidArgumentError(f"world_size must be an int in 1..{MAX_LOCAL_RANKS}, got {world_size!r}")
        self.world_size = world_size
        self.port = free_port(master_addr)
        self._tmp = tempfile.TemporaryDirectory(prefix="sagellm-comm-ranks-")
        ctx = mp.get_context("spawn")
        self._procs: list[Any] = []
        self._conns: list[Any] = []
        self.broken = False
        # one job token per pool (sagellm_comm.job): a stray process on the same port cannot join these ranks
        token = (env or {}).get(JOB_TOKEN_ENV) or os.environ.get(JOB_TOKEN_ENV) or new_token()
        base = {
            JOB_TOKEN_ENV: token,
            "WORLD_SIZE": str(world_size),
            "LOCAL_WORLD_SIZE": str(world_size),
            "MASTER_ADDR": master_addr,
            "MASTER_PORT": str(self.port),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            **(env or {}),
        }
        for rank in range(world_size):
            parent, child = ctx.Pipe()
            rank_env = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}
            proc = ctx.Process(
                target=worker_loop,
                args=(rank, rank_env, child, self._stack_path(rank)),
                name=f"sagellm-comm-rank{rank}",
                daemon=True,
            )
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
        self._collect("start-up", start_timeout, expect="ready")

    # ------------------------------------------------------------------------------------------------------
    def run(self, fn: Callable[..., Any], *args: Any, timeout: float = 120.0, **kwargs: Any) -> list[Any]:
        """Run ``fn(*args, **kwargs)`` on every rank; return the results in rank order."""
        if self.broken:
            raise RankFailedError("this RankPool was torn down after an earlier failure; create a new one")
        task = (fn, args, kwargs)
        try:
            pickle.dumps(task)
        except Exception as exc:
            raise InvalidArgumentError(
                f"cannot send {getattr(fn, '__qualname__', fn)!r} to the ranks: {exc} "
                "(use a module-level function and picklable arguments)"
            ) from exc
        for rank, conn in enumerate(self._conns):
            try:
                conn.send(task)
            except OSError as exc:  # BrokenPipeError: that rank is gone
                self._teardown()
                code = self._procs[rank].exitcode
                raise RankFailedError(
                    f"rank {rank} is gone (exit code {code}); this RankPool cannot run "
                    "anything any more, create a new one",
                    rank=rank,
                ) from exc
        return self._collect(getattr(fn, "__qualname__", repr(fn)), timeout)

    def close(self) -> None:
        """Stop the rank processes (a clean exit, killed after 5 s) and remove their files; the pool is unusable."""
        for conn in self._conns:
            try:
                conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        deadline = time.monotonic() + 5.0
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        self._kill_all()
        self._tmp.cleanup()

    def __enter__(self) -> RankPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------------
    def _stack_path(self, rank: int) -> str:
        return os.path.join(self._tmp.name, f"rank{rank}.stack")

    def _collect(self, what: str, timeout: float, expect: str = "ok") -> list[Any]:
        results: list[Any] = [None] * self.world_size
        pending = set(range(self.world_size))
        failure: tuple[int, str, str, bytes | None] | None = None
        deadline = time.monotonic() + timeout
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            by_conn = {self._conns[r]: r for r in pending}
            by_sentinel = {self._procs[r].sentinel: r for r in pending}
            ready = wait(list(by_conn) + list(by_sentinel), timeout=remaining)
            for obj in ready:
                rank = by_conn.get(obj, by_sentinel.get(obj))
                if rank not in pending:
                    continue
                msg = self._read(rank, from_sentinel=obj not in by_conn)
                pending.discard(rank)
                if msg is None:  # the rank is gone without a word
                    self._procs[rank].join(1.0)
                    code = self._procs[rank].exitcode
                    if failure is None:
                        failure = (rank, f"rank {rank} died (exit code {code})", "", None)
                elif msg[0] in ("ok", "ready"):
                    results[rank] = msg[1]
                elif failure is None:
                    failure = (rank, msg[1], msg[2], msg[3])
            if failure is not None and pending:
                deadline = min(deadline, time.monotonic() + FAILURE_GRACE_S)
        if failure is not None:
            self._fail(what, failure, pending)
        if pending:
            self._deadline(what, timeout, pending)
        return results

    def _read(self, rank: int, from_sentinel: bool) -> Any:
        """The rank's next message, or None if it died (its pipe is closed or empty after exit)."""
        conn = self._conns[rank]
        if from_sentinel and not conn.poll():
            return None
        try:
            return conn.recv()
        except (EOFError, OSError):
            return None

    def _fail(self, what: str, failure: tuple[int, str, str, bytes | None], pending: set[int]) -> None:
        rank, summary, tb, blob = failure
        stuck = f"; ranks {sorted(pending)} were still inside it and were stopped" if pending else ""
        if pending or any(not p.is_alive() for p in self._procs):
            self._teardown()  # a rank is stuck or dead: the pool cannot run the next call
        original = None
        if blob is not None:
            try:
                original = pickle.loads(blob)
            except Exception:
                original = None
        err = RankFailedError(
            f"rank {rank} failed in {what}: {summary}{stuck}\n--- rank {rank} traceback ---\n{tb}",
            rank=rank,
            remote_traceback=tb,
        )
        raise err from original

    def _deadline(self, what: str, timeout: float, pending: set[int]) -> None:
        stuck = tuple(sorted(pending))
        for r in stuck:
            try:
                os.kill(self._procs[r].pid, STACK_SIGNAL)
            except (ProcessLookupError, TypeError):
                pass
        time.sleep(0.5)
        stacks = {}
        for r in stuck:
            try:
                with open(self._stack_path(r)) as f:
                    stacks[r] = f.read()[-4000:]
            except OSError:
                stacks[r] = "(no stack)"
        self._teardown()
        shown = "\n".join(f"--- rank {r} was here ---\n{stacks[r]}" for r in stuck)
        others = " (the others did)" if len(stuck) < self.world_size else ""
        raise RankDeadlineError(
            f"rank(s) {list(stuck)} did not finish {what} within {timeout:.1f}s{others}; "
            f"all ranks were stopped.\n{shown}",
            stuck_ranks=stuck,
            stacks=stacks,
        )

    def _teardown(self) -> None:
        self.broken = True
        self._kill_all()

    def _kill_all(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, TypeError):
                    pass
        for proc in self._procs:
            proc.join(2.0)


def launch(
    fn: Callable[..., Any],
    world_size: int,
    *args: Any,
    timeout: float = 300.0,
    env: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> list[Any]:
    """Run ``fn`` once on ``world_size`` fresh local ranks; results in rank order."""
    with RankPool(world_size, env=env) as pool:
        return pool.run(fn, *args, timeout=timeout, **kwargs)
