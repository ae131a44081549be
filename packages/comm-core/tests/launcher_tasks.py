"""Rank functions for tests/test_launcher.py (module-level so the spawned ranks can import them by name)."""

from __future__ import annotations

import os
import time


def _rank() -> int:
    return int(os.environ["RANK"])


def whoami(tag: str, *, scale: int = 1) -> tuple:
    rank = _rank()
    # the last rank answers first: the results must still come back in rank order
    time.sleep(0.05 * (int(os.environ["WORLD_SIZE"]) - rank))
    return (rank, os.getpid(), tag, scale * rank, os.environ["LOCAL_RANK"], os.environ["WORLD_SIZE"])


def raise_on(bad_rank: int, hold_s: float) -> int:
    """``bad_rank`` raises; the others wait ``hold_s`` seconds (as a rank stuck in a collective would)."""
    rank = _rank()
    if rank == bad_rank:
        _inner_failure(rank)
    time.sleep(hold_s)
    return rank


def _inner_failure(rank: int) -> None:
    raise ValueError(f"deliberate failure on rank {rank}")


def raise_comm_error(bad_rank: int) -> int:
    from sagellm_comm.errors import RankMismatchError

    rank = _rank()
    if rank == bad_rank:
        raise RankMismatchError(f"rank {rank} disagrees")
    return rank


def hang_on(stuck_rank: int, hold_s: float) -> int:
    rank = _rank()
    if rank == stuck_rank:
        stuck_in_this_function_forever(hold_s)
    return rank


def stuck_in_this_function_forever(hold_s: float) -> None:
    deadline = time.monotonic() + hold_s
    while time.monotonic() < deadline:
        time.sleep(0.05)


def exit_on(bad_rank: int, code: int, hold_s: float) -> int:
    rank = _rank()
    if rank == bad_rank:
        os._exit(code)
    time.sleep(hold_s)
    return rank


def return_unpicklable(bad_rank: int):
    rank = _rank()
    if rank == bad_rank:
        return lambda: rank  # cannot travel back to the launcher
    return rank
