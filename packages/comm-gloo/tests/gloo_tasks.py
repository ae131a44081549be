"""Rank functions for the gloo tests (module-level so spawned ranks import them by name)."""

from __future__ import annotations

import torch

from sagellm_comm import CommError
from sagellm_comm.testing.tasks import backend_for


def mismatched_receives(name: str) -> list[str]:
    """Rank 0 sends float32 x4 each time; rank 1 receives with another dtype, a larger and a smaller buffer (blocking
    and async). Each mismatch must raise COMM_RANK_MISMATCH on the receiver only, and the next matching message must
    arrive intact (the process and the lane survive)."""
    comm = backend_for(name)
    rank = comm.get_rank()
    wrong = [torch.zeros(4, dtype=torch.int32), torch.zeros(8), torch.zeros(2), torch.zeros(3, dtype=torch.float64)]
    seen = []
    for i, buf in enumerate(wrong):
        if rank == 0:
            comm.send(torch.full((4,), float(i)), 1)
            comm.send(torch.full((4,), 10.0 + i), 1)
            continue
        try:
            if i == 3:
                comm.irecv(buf, 0).wait(30)
            else:
                comm.recv(buf, 0)
            seen.append(f"{i}: no error")
        except CommError as exc:
            ok = exc.code.value == "comm_rank_mismatch" and "it sent float32 x4" in exc.message
            seen.append(f"{i}: {'mismatch' if ok else exc.message[:120]}")
        good = torch.zeros(4)
        comm.recv(good, 0)
        if not torch.equal(good, torch.full((4,), 10.0 + i)):
            seen.append(f"{i}: the next message arrived wrong: {good.tolist()}")
    return seen
