"""Rank functions for the comm-cxl-ub tests (module-level so spawned ranks can import them)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import torch

from sagellm_comm import CommError, get_comm_backend


def shm_names(directory: str = "/dev/shm") -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith("sagellm-comm-"))


def crash_mid_collective(report_path: str, victim: int = 1, nbytes: int = 4 << 20) -> str:
    """Every rank loops large all_reduces; ``victim`` SIGKILLs itself while it is inside one. Survivors write
    what they saw to ``report_path`` (the pool reports the victim's death, not their return values)."""
    comm = get_comm_backend("shm")
    comm.init_process_group(timeout=60)
    rank = comm.get_rank()
    t = torch.ones(nbytes // 4)
    if rank == victim:
        # die at a random point of the loop: almost all of the time is spent inside all_reduce
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
        while True:
            comm.all_reduce(t)
    start = time.monotonic()
    try:
        for _ in range(100000):
            comm.all_reduce(t)
            t.fill_(1.0)
        outcome = {"error": None}
    except CommError as exc:
        outcome = {"error": exc.code.value, "message": exc.message, "retryable": exc.retryable}
    outcome["seconds"] = time.monotonic() - start
    with open(f"{report_path}.{rank}", "w") as f:
        json.dump(outcome, f)
    comm.destroy()
    return "survived"


def init_alone(timeout: float) -> dict:
    """Rank 0 initializes; the other ranks never do (they stand for ranks that crashed before mapping)."""
    if int(os.environ["RANK"]) != 0:
        time.sleep(timeout + 1.0)
        return {"skipped": True}
    comm = get_comm_backend("shm")
    try:
        comm.init_process_group(timeout=timeout)
    except CommError as exc:
        return {"error": exc.code.value, "message": exc.message}
    return {"error": None}


def job_traffic(job: int, iters: int) -> dict:
    """Steady traffic with values unique to the job: a region shared with another job would corrupt them."""
    comm = get_comm_backend("shm")
    comm.init_process_group()
    rank, n = comm.get_rank(), comm.get_world_size()
    bad = 0
    sub = comm.create_group([0, 1])
    try:
        for i in range(iters):
            size = 1000 if i % 2 else 300_000  # small and multi-chunk messages
            t = torch.full((size,), float(job * 1000 + rank + i))
            comm.all_reduce(t)
            bad += int((t != float(n * (job * 1000 + i) + n * (n - 1) / 2)).sum())
            g = torch.full((3,), float(job))
            comm.all_reduce(g, group=sub)
            bad += int((g != 2.0 * job).sum())
        return {"rank": rank, "wrong": bad, "engines": [comm.engine_path()[0], comm.engine_path(sub)[0]]}
    finally:
        comm.destroy()


def region_files_during_init(directory: str) -> dict:
    """What the region directory holds right after init (nothing: names are removed once all ranks mapped)."""
    comm = get_comm_backend("shm")
    comm.init_process_group()
    comm.barrier()
    after = shm_names(directory)
    mapped = comm.memory_bytes()
    comm.destroy()
    return {"after_init": after, "mapped_bytes": mapped}


def auto_name() -> str:
    return get_comm_backend("auto").name


def p2p_stress(messages: int) -> dict:
    """Rank 0 streams ``messages`` isends of varying sizes (some many mailboxes long) to rank 1, which receives
    them in order with blocking recv; then both exchange 3 MiB at once (each isend waits for the other's recv)."""
    comm = get_comm_backend("shm")
    comm.init_process_group()
    rank = comm.get_rank()
    sizes = [(i * 7919) % 200_000 + (i % 3) for i in range(messages)]
    wrong = 0
    try:
        if rank == 0:
            works = [comm.isend(torch.full((n,), float(i)), 1) for i, n in enumerate(sizes)]
            for w in works:
                w.wait(60)
        elif rank == 1:
            for i, n in enumerate(sizes):
                if i % 10 == 5:
                    time.sleep(0.01)  # fall behind: messages pile up unasked-for, then must still match in order
                buf = torch.empty(n)
                comm.recv(buf, 0)
                wrong += int((buf != float(i)).sum())
        if rank < 2:
            peer = 1 - rank
            out = torch.arange(786_432, dtype=torch.float32) + rank
            got = torch.empty_like(out)
            ws = [comm.isend(out, peer), comm.irecv(got, peer)]
            for w in ws:
                w.wait(60)
            wrong += int((got != torch.arange(786_432, dtype=torch.float32) + peer).sum())
        return {"rank": rank, "wrong": wrong}
    finally:
        comm.destroy()


def p2p_tags_and_sizes() -> dict:
    """Tagged messages received in another order than sent (the early ones wait in buffers of their own), a
    receive of the wrong size fails with both sizes named, and the channel still works afterwards."""
    comm = get_comm_backend("shm")
    comm.init_process_group()
    rank = comm.get_rank()
    out: dict = {"rank": rank}
    try:
        if rank == 0:
            for tag in (5, 6, 7):
                comm.send(torch.full((300_000,), float(tag)), 1, tag=tag)  # 1.2 MB: several mailboxes each
            comm.send(torch.ones(10), 1)
            comm.send(torch.full((4,), 9.0), 1)
        elif rank == 1:
            got = {}
            for tag in (7, 5, 6):
                buf = torch.empty(300_000)
                comm.recv(buf, 0, tag=tag)
                got[tag] = sorted(set(buf.tolist()))
            out["got"] = got
            try:
                comm.recv(torch.empty(5), 0)
                out["mismatch"] = None
            except CommError as exc:
                out["mismatch"] = (exc.code.value, exc.message)
            buf = torch.empty(4)
            comm.recv(buf, 0)
            out["after"] = buf.tolist()
        comm.barrier()
        return out
    finally:
        comm.destroy()


def device_windows(name: str) -> list:
    """Where each group's window of the device lies, as this rank computed it."""
    from sagellm_comm.testing.tasks import backend_for

    return sorted(backend_for(name)._provider_obj._windows.items())


def destroy_with_an_async_op_pending(hold_s: float) -> dict:
    """Rank 0 submits an async all_reduce that rank 1 never joins, then destroys its backend: the progress thread must
    give up at once (no wait for the timeout, no crash from unmapping under it) and the handle must say why."""
    comm = get_comm_backend("shm")
    comm.init_process_group(timeout=60)
    if comm.get_rank() != 0:
        time.sleep(hold_s)  # alive, never calls the collective
        comm.destroy()
        return {"rank": 1}
    work = comm.all_reduce(torch.ones(1 << 20), async_op=True)
    time.sleep(0.2)
    completed_early = work.is_completed()
    start = time.monotonic()
    comm.destroy()
    destroy_s = time.monotonic() - start
    try:
        work.wait(5)
        error = None
    except CommError as exc:
        error = {"code": exc.code.value, "message": exc.message}
    return {"rank": 0, "completed_early": completed_early, "destroy_s": destroy_s, "error": error}


def mismatched_collectives(name: str) -> list[str]:
    """Ranks call collectives that do not match (size, op, dtype, root, reduce op; blocking and async). Every case
    must raise COMM_RANK_MISMATCH on every rank, and a matching all_reduce right after must be right."""
    from sagellm_comm.testing.tasks import backend_for, mismatch_outcomes

    comm = backend_for(name)
    other = comm.get_rank() == comm.get_world_size() - 1  # the last rank is the odd one out
    cases = {
        "numel": lambda: comm.all_reduce(torch.ones(8 if other else 4)),
        "op": lambda: comm.broadcast(torch.ones(4), 0) if other else comm.all_reduce(torch.ones(4)),
        "dtype": lambda: comm.all_reduce(torch.ones(4, dtype=torch.int32 if other else torch.float32)),
        "root": lambda: comm.broadcast(torch.ones(4), 1 if other else 0),
        "reduce op": lambda: comm.all_reduce(torch.ones(4), "max" if other else "sum"),
        "async numel": lambda: comm.all_gather(torch.ones(3 if other else 5), async_op=True).wait(30),
    }
    return mismatch_outcomes(comm, cases, lambda field: field.removeprefix("async "))
