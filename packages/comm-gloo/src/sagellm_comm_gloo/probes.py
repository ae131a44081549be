"""Availability of the Gloo backend, answered without importing the backend module."""

from __future__ import annotations

__all__ = ["gloo_available"]


def gloo_available() -> tuple[bool, str]:
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        return False, "this torch build has no torch.distributed"
    if not dist.is_gloo_available():
        return False, "this torch build was compiled without Gloo"
    return True, f"torch {torch.__version__} with Gloo"
