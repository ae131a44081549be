"""Rank functions for the gloo tests (module-level so spawned ranks import them by name)."""

from __future__ import annotations

import torch

from sagellm_comm import CommError
from sagellm_comm.testing.tasks import backend_for, mismatch_outcomes


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


def mismatched_collectives_in_debug_mode() -> list[str]:
    """With SAGELLM_COMM_DEBUG=detail: mismatched collectives raise COMM_RANK_MISMATCH on every rank before gloo sees
    them (a size mismatch used to abort the process), matching ones still work, and a rank that never arrives is
    named in the others' COMM_TIMEOUT."""
    import os

    from sagellm_comm import get_comm_backend

    backend_for("gloo")  # the pool's world exists (shared pools): this second instance adopts it
    os.environ["SAGELLM_COMM_DEBUG"] = "detail"  # read at init
    comm = get_comm_backend("gloo")
    try:
        comm.init_process_group(timeout=4)
    finally:
        del os.environ["SAGELLM_COMM_DEBUG"]
    try:
        return _debug_cases(comm)
    finally:
        comm.destroy()


def _debug_cases(comm) -> list[str]:
    rank, n = comm.get_rank(), comm.get_world_size()
    odd = rank == n - 1
    cases = {
        "size": lambda: comm.all_reduce(torch.ones(8 if odd else 4)),
        "root": lambda: comm.broadcast(torch.ones(4), 1 if odd else 0),
        "op": lambda: comm.broadcast(torch.ones(4), 0) if odd else comm.all_reduce(torch.ones(4)),
        "async size": lambda: comm.all_gather(torch.ones(3 if odd else 5), async_op=True).wait(10),
    }
    seen = mismatch_outcomes(comm, cases, lambda field: "rank 0:")  # debug mode lists every rank's call
    if odd:  # the last rank never calls the next collective
        comm.side_channel.scope("test").get("done", owner="rank 0", timeout=30)
        return seen
    try:
        comm.all_reduce(torch.ones(2))
        seen.append("straggler: no error")
    except CommError as exc:
        ok = exc.code.value == "comm_timeout" and f"rank {n - 1}" in exc.message and "all_reduce" in exc.message
        seen.append(f"straggler: {'named' if ok else exc.message[:200]}")
    finally:
        if rank == 0:
            comm.side_channel.scope("test").set("done", "1")
    return seen


def straggler_then_dump(trace_dir: str) -> str:
    """Both ranks run matching calls; then rank 0 waits at a barrier (timeout 2 s) that rank 1 reaches only later.
    Rank 0's timeout writes its flight recorder by itself; rank 1 writes its own through the API first, then joins
    the barrier so the group ends consistent."""
    import os

    from sagellm_comm import get_comm_backend

    os.environ["SAGELLM_COMM_TRACE_DIR"] = trace_dir
    comm = get_comm_backend("gloo")
    comm.init_process_group(timeout=30)
    rank = comm.get_rank()
    sync = comm.side_channel.scope("straggler")
    try:
        comm.all_reduce(torch.ones(16))
        comm.broadcast(torch.ones(4), 0)
        comm.all_gather(torch.ones(2), async_op=True).wait(30)
        if rank == 0:
            try:
                comm.barrier(timeout=2.0)
                outcome = "no timeout"
            except CommError as exc:
                outcome = f"{exc.code.value} -> {getattr(exc, 'trace_path', None)}"
            sync.set("timed-out", "1")
            sync.get("joined", owner="rank 1", timeout=60)
            return outcome
        path = comm.dump_trace()
        sync.get("timed-out", owner="rank 0", timeout=60)
        comm.barrier()  # completes rank 0's pending barrier
        sync.set("joined", "1")
        return str(path)
    finally:
        os.environ.pop("SAGELLM_COMM_TRACE_DIR", None)
        comm.destroy()


def headerless_p2p(debug: bool) -> list[str]:
    """gloo without its message headers stands for an engine whose messages carry no dtype (NCCL, HCCL): rank 0
    sends float32 x4 messages; rank 1 receives some into int32 x4 (same bytes: gloo delivers them). Without debug
    mode that is garbage with no error; with it, COMM_RANK_MISMATCH on the receiver (blocking and async), and the
    matching messages around it arrive intact."""
    import os

    from sagellm_comm_gloo.backend import GlooBackend

    class HeaderlessGloo(GlooBackend):
        p2p_headers = False

    backend_for("gloo")  # the pool's world exists: this second instance adopts it
    if debug:
        os.environ["SAGELLM_COMM_DEBUG"] = "detail"
    comm = HeaderlessGloo()
    try:
        comm.init_process_group(timeout=30)
    finally:
        os.environ.pop("SAGELLM_COMM_DEBUG", None)
    rank, seen = comm.get_rank(), []
    plan = [
        ("ok", torch.float32),
        ("recv", torch.int32),
        ("ok", torch.float32),
        ("irecv", torch.int32),
        ("ok", torch.float32),
    ]
    try:
        for i, (how, dtype) in enumerate(plan):
            if rank == 0:
                comm.send(torch.full((4,), 1.5 + i), 1)
                continue
            buf = torch.zeros(4, dtype=dtype)
            try:
                if how == "irecv":
                    comm.irecv(buf, 0).wait(30)
                else:
                    comm.recv(buf, 0)
                right = torch.equal(buf, torch.full((4,), 1.5 + i))
                seen.append(f"{i} {how}: {'right' if right else 'garbage, no error'}")
            except CommError as exc:
                ok = (
                    exc.code.value == "comm_rank_mismatch"
                    and "sent float32 x4" in exc.message
                    and "received into int32 x4" in exc.message
                )
                seen.append(f"{i} {how}: {'mismatch' if ok else exc.message[:200]}")
        comm.barrier()
    finally:
        comm.destroy()
    return seen
