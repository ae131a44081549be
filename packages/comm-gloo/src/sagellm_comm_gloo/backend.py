"""``GlooBackend``: the contract on torch.distributed's Gloo process group (CPU tensors, TCP between ranks)."""

from __future__ import annotations

import torch

from sagellm_comm.capabilities import ALL_OPS, FLOAT_DTYPES, INT_DTYPES, Capabilities
from sagellm_comm.engines.torch_distributed import TorchDistributedBackend

__all__ = ["GlooBackend", "gloo_available"]


class GlooBackend(TorchDistributedBackend):
    name = "gloo"
    torch_backend = "gloo"
    capabilities = Capabilities(
        ops=ALL_OPS,
        dtypes=FLOAT_DTYPES | INT_DTYPES | {torch.bool},
        devices=frozenset({"cpu"}),
        reduce_support=Capabilities.reduce_table(FLOAT_DTYPES, INT_DTYPES),
        non_contiguous=True,
    )


def gloo_available() -> tuple[bool, str]:
    import torch.distributed as dist

    if not dist.is_available():
        return False, "this torch build has no torch.distributed"
    if not dist.is_gloo_available():
        return False, "this torch build was compiled without Gloo"
    return True, f"torch {torch.__version__} with Gloo"
