"""sagellm-comm mpshm plugin. ``MpshmBackend`` is imported on first access (the entry point stays light)."""

from __future__ import annotations

from typing import Any

from sagellm_comm_mpshm._version import __version__

__all__ = ["MpshmBackend", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "MpshmBackend":
        from sagellm_comm_mpshm.backend import MpshmBackend

        return MpshmBackend
    raise AttributeError(f"module 'sagellm_comm_mpshm' has no attribute {name!r}")
