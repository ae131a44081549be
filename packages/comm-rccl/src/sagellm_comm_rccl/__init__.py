"""sagellm-comm rccl plugin. ``RcclBackend`` is imported on first access (the entry point stays light)."""

from __future__ import annotations

from typing import Any

from sagellm_comm_rccl._version import __version__

__all__ = ["RcclBackend", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "RcclBackend":
        from sagellm_comm_rccl.backend import RcclBackend

        return RcclBackend
    raise AttributeError(f"module 'sagellm_comm_rccl' has no attribute {name!r}")
