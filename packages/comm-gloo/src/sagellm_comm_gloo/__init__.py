"""sagellm-comm Gloo plugin. ``GlooBackend`` is imported on first access (the entry point stays light)."""

from __future__ import annotations

from typing import Any

from sagellm_comm_gloo._version import __version__

__all__ = ["GlooBackend", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "GlooBackend":
        from sagellm_comm_gloo.backend import GlooBackend

        return GlooBackend
    raise AttributeError(f"module 'sagellm_comm_gloo' has no attribute {name!r}")
