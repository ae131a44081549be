"""The loop each rank process runs: receive a task, run it, send back its result or traceback."""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import pickle
import signal
import traceback
from typing import Any

STACK_SIGNAL = signal.SIGUSR1


def _die_with_parent() -> None:
    """Linux: the kernel kills this rank if the launcher dies, so no rank outlives a crashed test run."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _encode_error(exc: BaseException) -> tuple[str, str, bytes | None]:
    tb = traceback.format_exc()
    try:
        blob = pickle.dumps(exc)
        pickle.loads(blob)
    except Exception:
        blob = None
    return f"{type(exc).__name__}: {exc}", tb, blob


def worker_loop(rank: int, env: dict[str, str], conn: Any, stack_path: str) -> None:
    _die_with_parent()
    os.environ.update(env)
    stack_file = open(stack_path, "w")  # noqa: SIM115 - lives as long as the process
    faulthandler.register(STACK_SIGNAL, file=stack_file, all_threads=True)
    threads = env.get("OMP_NUM_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    conn.send(("ready", rank))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            break
        if task is None:
            break
        fn, args, kwargs = task
        try:
            result = fn(*args, **kwargs)
            conn.send(("ok", result))
        except BaseException as exc:  # report everything, including KeyboardInterrupt in the rank
            conn.send(("err", *_encode_error(exc)))
    _shutdown()


def _shutdown() -> None:
    with contextlib.suppress(Exception):
        from sagellm_comm.backend import live_backends

        # every instance, newest first: a rank may hold two of one name (the conformance suite's cached backend
        # and one a test made), and an instance never destroyed leaks what only its destroy releases
        for backend in reversed(live_backends()):
            with contextlib.suppress(Exception):
                backend.destroy()
    os._exit(0)
