"""The job token: a rank joins only the rendezvous of its own job.

Two jobs started with the same ``MASTER_ADDR:MASTER_PORT`` (a copied launch script, a stale environment) would
otherwise meet in one store and mix their keys: wrong peers, shifted epochs, hangs. Every rank of a job gets the
same secret, ``SAGELLM_COMM_JOB_TOKEN`` (the project's launcher generates one for its ranks; with torchrun, set it
in the environment of all ranks, e.g. ``export SAGELLM_COMM_JOB_TOKEN=$(python -c 'import secrets;
print(secrets.token_hex(16))')``).

When it opens the store, rank 0 posts ``sagellm_comm/job``: a fresh nonce and ``HMAC-SHA256(token, nonce)`` (or
``-`` when it has no token); the token itself never travels. Every other rank reads that record BEFORE it writes
anything to the store, and refuses to join (``COMM_GROUP_INVALID``) when its own token gives another HMAC, or when
one side has a token and the other has none. The refused process has changed nothing, so the job it stumbled into
goes on.

Scope: torch's store has no authentication, so this protects jobs from each other's mistakes, not from an attacker
who can reach the port; against that, the store listens on loopback unless an address is configured
(:mod:`sagellm_comm.listen`), and cross-host jobs belong on a private network.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import Any

from sagellm_comm.errors import GroupInvalidError

__all__ = ["JOB_KEY", "JOB_TOKEN_ENV", "check_job", "new_token"]

JOB_TOKEN_ENV = "SAGELLM_COMM_JOB_TOKEN"
JOB_KEY = "sagellm_comm/job"


def new_token() -> str:
    return secrets.token_hex(16)


def _proof(token: str, nonce: str) -> str:
    return hmac.new(token.encode(), nonce.encode(), hashlib.sha256).hexdigest() if token else "-"


def _record(token: str) -> bytes:
    nonce = secrets.token_hex(16)
    return f"{nonce}:{_proof(token, nonce)}".encode()


def check_job(store: Any, rank: int, where: str, wait: Any) -> None:
    """Rank 0 posts the job record (unless one is there); every rank checks it against its own token.

    ``store`` is a torch ``Store``; ``wait(key)`` waits (bounded) for a key and returns its value."""
    token = os.environ.get(JOB_TOKEN_ENV, "")
    if rank == 0:
        mine = _record(token)
        record = bytes(store.compare_set(JOB_KEY, b"", mine))  # the existing record if another rank 0 was first
    else:
        record = wait(JOB_KEY)
    nonce, _, proof = record.decode(errors="replace").partition(":")
    if hmac.compare_digest(proof, _proof(token, nonce)):
        return
    if proof == "-" or not token:
        theirs, ours = ("no job token", "has one") if proof == "-" else ("a job token", "has none")
        detail = f"the job there was started with {theirs} and this process {ours} ({JOB_TOKEN_ENV})"
    else:
        detail = f"the job there was started with another {JOB_TOKEN_ENV} than this process"
    raise GroupInvalidError(
        f"rank {rank}: the rendezvous store at {where} belongs to another job: {detail}. Nothing was written to "
        "it. Give each job its own MASTER_PORT, and all ranks of one job the same job token",
        retryable=False,
    )
