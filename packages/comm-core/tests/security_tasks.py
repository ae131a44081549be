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


def _strays(tokens: dict[str, str | None]) -> dict[str, str]:
    """Start one stray process per entry at once (name -> its job token, None for none); their last lines."""
    procs = {}
    for name, token in tokens.items():
        env = {k: v for k, v in os.environ.items() if k != "SAGELLM_COMM_JOB_TOKEN"}
        if token is not None:
            env["SAGELLM_COMM_JOB_TOKEN"] = token
        procs[name] = subprocess.Popen(
            [sys.executable, "-c", STRAY], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=90)
        out[name] = (stdout.strip().splitlines() or [stderr[-500:]])[-1]
    return out


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
        seen = _strays({"no_token": None, "other_token": "not-this-jobs-token"})
        _garbage(rdzv.master_port)
    rounds = []
    for _ in range(2):
        got = channel.exchange("after", f"{channel.prefix}|{rdzv.rank}", rdzv.rank, rdzv.world_size)
        rounds.append([v.decode() for v in got])
        release_side_channel(rdzv)
        channel = open_side_channel(rdzv, "unit")
    release_side_channel(rdzv)
    return {"seen": seen, "rounds": rounds}
