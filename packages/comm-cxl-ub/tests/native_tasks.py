"""Rank tasks of test_native.py (importable by name in the rank processes)."""

from __future__ import annotations

import os

import torch

from sagellm_comm import get_comm_backend
from sagellm_comm.errors import CommError


def engines_of_a_mixed_group(engine_of_rank_1: str, engine_of_rank_0: str = "auto") -> dict:
    """Rank 1 runs ``engine_of_rank_1``; what every rank's world group runs, and whether an all_reduce is right."""
    rank_engine = engine_of_rank_1 if int(os.environ["RANK"]) == 1 else engine_of_rank_0
    comm = get_comm_backend("shm", engine=rank_engine)
    try:
        comm.init_process_group(timeout=30)
    except CommError as exc:
        return {"error": exc.code.value, "message": exc.message}
    try:
        path, why = comm.engine_path()
        out: dict = {"path": path, "why": why}
        if engine_of_rank_0 != "native":  # rank 0 raised at init then: no collective to run with it
            t = torch.arange(100_000, dtype=torch.float32) + comm.get_rank()
            comm.all_reduce(t)
            out["wrong"] = int((t != 2 * torch.arange(100_000, dtype=torch.float32) + 1).sum())
        return out
    finally:
        comm.destroy()


def half_sums(numel: int) -> dict:
    """fp16/bf16 all_reduce of values whose pairwise-rounded sum differs from the fp32-accumulated one; the result on
    every rank (they must agree bit for bit)."""
    from sagellm_comm.testing.tasks import backend_for

    comm = backend_for("shm")
    out = {}
    for dtype, big in ((torch.float16, 2048.0), (torch.bfloat16, 256.0)):  # where the spacing is 2
        t = torch.full((numel,), big if comm.get_rank() == 0 else 1.0, dtype=dtype)
        comm.all_reduce(t)
        out[str(dtype)] = t.float().unique().tolist()
    out["path"] = comm.engine_path()[0]
    return out


def interrupted_wait(hold_s: float) -> dict:
    """Rank 0 enters an all_reduce rank 1 never joins and gets SIGINT half a second later: with the _sgshm
    extension the wait runs the handler, so KeyboardInterrupt arrives at once, not at the 60 s group timeout."""
    import signal
    import threading
    import time

    comm = get_comm_backend("shm")
    comm.init_process_group(timeout=60)
    try:
        if comm.get_rank() != 0:
            time.sleep(hold_s)
            return {"rank": 1}
        signal.signal(signal.SIGINT, signal.default_int_handler)
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        start = time.monotonic()
        try:
            comm.all_reduce(torch.ones(1024))
        except KeyboardInterrupt:
            return {"rank": 0, "interrupted_after_s": time.monotonic() - start}
        return {"rank": 0, "interrupted_after_s": None}
    finally:
        comm.destroy()


def through_ctypes() -> dict:
    """The native engine with its blocking calls through ctypes, as where the _sgshm extension was not built:
    all_reduce (direct, split, several dtypes), broadcast, all_gather and barrier, every result checked."""
    from sagellm_comm_cxl_ub import native

    lib = native.lib
    native.calls = {"all_reduce": lib.sg_all_reduce, "sync": lib.sg_sync, "wait": lib.sg_wait}
    native.SIGNAL_CHECK = None
    comm = get_comm_backend("shm")
    comm.init_process_group(timeout=60)
    try:
        rank, n = comm.get_rank(), comm.get_world_size()
        st = comm._state(comm.world_group)
        wrong = 0
        for dtype in (torch.float32, torch.bfloat16, torch.int64):
            for numel in (5, 100_000, 400_000):  # one step, and chunked direct/split
                t = (torch.arange(numel) % 7 + rank).to(dtype)
                comm.all_reduce(t)
                wrong += int((t != ((torch.arange(numel) % 7) * n + n * (n - 1) // 2).to(dtype)).sum())
        b = torch.full((1000,), float(rank))
        comm.broadcast(b, n - 1)
        wrong += int((b != n - 1).sum())
        got = comm.all_gather(torch.full((3,), float(rank)))
        wrong += sum(int((g != r).sum()) for r, g in enumerate(got))
        comm.barrier()
        return {
            "wrong": wrong,
            "path": comm.engine_path()[0],
            "call": st.engine._call.__name__,
            "interrupt_hook": st.engine._native.interrupted,
        }
    finally:
        comm.destroy()
