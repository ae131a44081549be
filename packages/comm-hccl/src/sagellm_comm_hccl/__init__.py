"""sagellm-comm hccl plugin. ``HcclBackend`` is imported on first access (the entry point stays light)."""

from __future__ import annotations

from typing import Any

from sagellm_comm_hccl._version import __version__

__all__ = ["HcclBackend", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "HcclBackend":
        from sagellm_comm_hccl.backend import HcclBackend

        return HcclBackend
    raise AttributeError(f"module 'sagellm_comm_hccl' has no attribute {name!r}")
