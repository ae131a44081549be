"""The ranks' process factory: a forkserver that imports torch and sagellm_comm once; each rank is a fork of it.

A fresh interpreter per rank costs ~3.5 s of CPU here (torch's import), 4 ranks per trial on 2 cores; a fork costs
milliseconds. ``start()`` launches the server at once, so its imports overlap the parent's own. This module imports
nothing heavy.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from multiprocessing import forkserver
from typing import Any

__all__ = ["PRELOAD", "start"]

PRELOAD = [
    "torch",
    "torch.distributed",
    "sagellm_comm",
    "sagellm_comm_gloo",
    "sagellm_comm_cxl_ub",
    "sagellm_comm_chaos.rank",
]


def start() -> Any:
    """The forkserver context, its server already starting (it inherits this process's sys.path and env)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # c10d warns on every store socket a dead rank leaves half-open: expected here, and it buries the report
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()
    return ctx
