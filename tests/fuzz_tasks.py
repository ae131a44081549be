"""Rank functions for tests/test_fuzz_public_api.py: each runs on both ranks of a local 2-rank pool.

A task gets a list of drawn cases, runs them all in one initialization and returns one plain outcome per case (no
tensors cross the pipe): ``("ok", detail)``, ``("err", error class, protocol code, message)``, or for an exception
that is not a ``CommError`` (a bug) ``("raw", class, message)``: recorded rather than raised, so the rank stays
alive and in step with its peer, and the test names the bug. Every task destroys what it initialized, so the next
task on the pool starts clean.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import torch
from compat_tasks import reset  # noqa: F401  (destroys what an earlier task left; ranks import it)

from sagellm_comm import CommError, get_comm_backend

TASK_TIMEOUT_S = 20.0  # every blocking call of a task is bounded by this (the rendezvous timeout)


def _rank() -> int:
    return int(os.environ["RANK"])


def make_tensor(dtype_name: str, shape: tuple[int, ...], salt: int = 0) -> torch.Tensor:
    """Deterministic values of any dtype (bool included): small integers, so every rank builds the same ones."""
    n = 1
    for s in shape:
        n *= s
    base = (torch.arange(n, dtype=torch.int64) * 3 + salt) % 11 - 5
    return base.to(getattr(torch, dtype_name)).reshape(shape)


def _err(exc: Exception) -> tuple[Any, ...]:
    if isinstance(exc, CommError):
        return ("err", type(exc).__name__, exc.code.value, exc.message)
    return ("raw", type(exc).__name__, str(exc)[:500])


def _init(name: str) -> Any:
    comm = get_comm_backend(name)
    comm.init_process_group(world_size=2, rank=_rank(), timeout=TASK_TIMEOUT_S)
    return comm


def p2p_cases(name: str, cases: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rank 0 sends ``case["send"]`` (dtype name, shape), rank 1 receives into ``case["recv"]``; sync or async,
    into a contiguous or a strided buffer, on ``case["tag"]``. Rank 1's outcome says whether the bytes arrived
    intact (``("ok", True)``)."""
    comm = _init(name)
    out: list[tuple[Any, ...]] = []
    try:
        for c in cases:
            if _rank() == 0:
                t = make_tensor(*c["send"], salt=c["salt"])
                try:
                    if c["async"]:
                        comm.isend(t, 1, tag=c["tag"]).wait(TASK_TIMEOUT_S)
                    else:
                        comm.send(t, 1, tag=c["tag"])
                    out.append(("ok", None))
                except Exception as exc:  # CommError, or a bug the test reports
                    out.append(_err(exc))
            else:
                dtype, shape = c["recv"]
                n = 1
                for size in shape:
                    n *= size
                if c["strided"] and n > 1:  # a strided buffer of <= 1 element: shm's BUG-21 (test_fuzz_public_api)
                    buf = torch.zeros((*shape, 2), dtype=getattr(torch, dtype))[..., 1]
                else:
                    buf = torch.zeros(shape, dtype=getattr(torch, dtype))
                try:
                    if c["async"]:
                        comm.irecv(buf, 0, tag=c["tag"]).wait(TASK_TIMEOUT_S)
                    else:
                        comm.recv(buf, 0, tag=c["tag"])
                    sent = make_tensor(*c["send"], salt=c["salt"])
                    same = (
                        sent.dtype == buf.dtype
                        and sent.numel() == buf.numel()
                        and torch.equal(sent.reshape(-1), buf.reshape(-1))
                    )
                    out.append(("ok", same))
                except Exception as exc:  # CommError, or a bug the test reports
                    out.append(_err(exc))
        comm.barrier(timeout=TASK_TIMEOUT_S)  # the last case is over on both ranks before destroy
    finally:
        comm.destroy()
    return out


def raw_frames(headers: list[tuple[int, int, int]], use_irecv: bool) -> list[tuple[Any, ...]]:
    """Rank 0 bypasses the API and sends bare ``(magic, dtype code, numel)`` frames (what a stranger or a corrupt
    peer would put on the wire), never longer than the first frame gloo's receiver posts; rank 1 receives each
    into a float32 x4 buffer through the public API. Rank 1's outcome per frame: the error, or ``("ok", ...)``."""
    import torch.distributed as dist

    from sagellm_comm.engines.p2p_headers import HEADER

    comm = _init("gloo")
    out: list[tuple[Any, ...]] = []
    try:
        for magic, code, numel in headers:
            if _rank() == 0:
                raw = bytearray(HEADER + 16)
                struct.pack_into("<qqq", raw, 0, magic, code, numel)
                dist.send(torch.frombuffer(raw, dtype=torch.uint8), dst=1, group=comm.world_group.handle)
                out.append(("ok", None))
            else:
                buf = torch.zeros(4)
                try:
                    if use_irecv:
                        comm.irecv(buf, 0).wait(TASK_TIMEOUT_S)
                    else:
                        comm.recv(buf, 0)
                    out.append(("ok", buf.tolist()))
                except Exception as exc:  # CommError, or a bug the test reports
                    out.append(_err(exc))
            comm.barrier(timeout=TASK_TIMEOUT_S)
    finally:
        comm.destroy()
    return out
