"""Rank functions for test_security.py (module-level so spawned ranks can import them by name)."""

from __future__ import annotations

import os
import subprocess
import sys

from sagellm_comm.rendezvous import resolve_rendezvous
from sagellm_comm.store import open_side_channel, release_side_channel

STRAY = r"""
import time
from sagellm_comm import CommError
from sagellm_comm.rendezvous import resolve_rendezvous
from sagellm_comm.store import open_side_channel
start = time.monotonic()
try:
    open_side_channel(resolve_rendezvous(world_size=2, rank=1, timeout=20), "unit")
    print("JOINED")
except CommError as exc:
    print(f"{time.monotonic() - start:.2f}|{exc.code.value}|{exc.message}")
"""


def _stray(token: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "SAGELLM_COMM_JOB_TOKEN"}
    if token is not None:
        env["SAGELLM_COMM_JOB_TOKEN"] = token
    proc = subprocess.run([sys.executable, "-c", STRAY], env=env, capture_output=True, text=True, timeout=90)
    return (proc.stdout.strip().splitlines() or [proc.stderr[-500:]])[-1]


def _garbage(port: int) -> None:
    import socket

    for payload in (b"\xff" * 64, os.urandom(4096), b"GET / HTTP/1.0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(payload)


def job_survives_strangers() -> dict:
    """A live 2-rank job meeting through its store; rank 0 sends strangers to the rendezvous port (no token, another
    token, garbage bytes); then both ranks exchange, re-open (the store's epoch counters must be untouched: both
    ranks get the same namespace) and exchange again."""
    rdzv = resolve_rendezvous(timeout=60)
    channel = open_side_channel(rdzv, "unit")
    seen: dict = {}
    if rdzv.rank == 0:
        seen["no_token"] = _stray(None)
        seen["other_token"] = _stray("not-this-jobs-token")
        _garbage(rdzv.master_port)
    rounds = []
    for _ in range(2):
        got = channel.exchange("after", f"{channel.prefix}|{rdzv.rank}", rdzv.rank, rdzv.world_size)
        rounds.append([v.decode() for v in got])
        release_side_channel(rdzv)
        channel = open_side_channel(rdzv, "unit")
    release_side_channel(rdzv)
    return {"seen": seen, "rounds": rounds}
