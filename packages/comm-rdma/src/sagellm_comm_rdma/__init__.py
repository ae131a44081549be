"""sagellm-comm rdma plugin. ``RdmaBackend`` is imported on first access (the entry point stays light)."""

from __future__ import annotations

from typing import Any

from sagellm_comm_rdma._version import __version__

__all__ = ["RdmaBackend", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "RdmaBackend":
        from sagellm_comm_rdma.backend import RdmaBackend

        return RdmaBackend
    raise AttributeError(f"module 'sagellm_comm_rdma' has no attribute {name!r}")
