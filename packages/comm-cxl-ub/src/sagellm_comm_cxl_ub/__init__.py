"""sagellm-comm memory-semantic collectives: one engine over a shared mapped region (``shm``, ``cxl``, ``ub``).

The backend classes are imported on first access, so importing the package (as the plugin entry point does) stays
light.
"""

from __future__ import annotations

import importlib
from typing import Any

from sagellm_comm_cxl_ub._version import __version__

__all__ = ["CxlBackend", "MemoryBackend", "ShmBackend", "UbBackend", "__version__"]

_LAZY = {
    "MemoryBackend": "sagellm_comm_cxl_ub.backend",
    "CxlBackend": "sagellm_comm_cxl_ub.kinds",
    "ShmBackend": "sagellm_comm_cxl_ub.kinds",
    "UbBackend": "sagellm_comm_cxl_ub.kinds",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sagellm_comm_cxl_ub' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
