"""sagellm-comm nccl plugin. ``NcclBackend`` is imported on first access (the entry point stays light)."""

from __future__ import annotations

from typing import Any

from sagellm_comm_nccl._version import __version__

__all__ = ["NcclBackend", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "NcclBackend":
        from sagellm_comm_nccl.backend import NcclBackend

        return NcclBackend
    raise AttributeError(f"module 'sagellm_comm_nccl' has no attribute {name!r}")
