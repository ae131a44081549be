"""What topology discovery learns from this plugin: which NCCL/RCCL library the direct path would load, its version
beside torch's, and the NCCL_* settings the library will read. Never raises: a missing library is a fact too."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["library_facts"]


def library_facts(flavor: str) -> dict[str, Any]:
    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith(("NCCL_", "RCCL_"))}
    try:
        import torch

        from sagellm_comm_nccl.binding import find_library

        lib = find_library(flavor)
    except Exception as exc:
        return {"library": None, "reason": f"{type(exc).__name__}: {exc}", "env": env}
    torch_nccl = None
    try:
        torch_nccl = ".".join(map(str, torch.cuda.nccl.version()))
    except Exception:  # a torch built without NCCL
        torch_nccl = None
    return {
        "library": lib.path,
        "source": lib.source,
        "version": lib.version_string,
        "torch_nccl": torch_nccl,
        "env": env,
    }
