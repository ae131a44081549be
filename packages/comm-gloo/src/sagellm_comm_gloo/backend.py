"""``GlooBackend``: the contract on torch.distributed's Gloo process group (CPU tensors, TCP between ranks).

Gloo runs async ops on its own threads, so they progress while the caller does other work
(``concurrent_progress``). Gloo moves raw bytes, so point-to-point messages carry a header with their dtype and size
(``p2p_headers``): a receive that does not match raises COMM_RANK_MISMATCH instead of returning garbage or aborting
the process.
"""

from __future__ import annotations

import torch

from sagellm_comm.capabilities import ALL_OPS, FLOAT_DTYPES, INT_DTYPES, Capabilities
from sagellm_comm.engines.torch_distributed import TorchDistributedBackend

__all__ = ["GlooBackend"]


class GlooBackend(TorchDistributedBackend):
    name = "gloo"
    torch_backend = "gloo"
    p2p_headers = True
    capabilities = Capabilities(
        ops=ALL_OPS,
        dtypes=FLOAT_DTYPES | INT_DTYPES | {torch.bool},
        devices=frozenset({"cpu"}),
        reduce_support=Capabilities.reduce_table(FLOAT_DTYPES, INT_DTYPES),
        non_contiguous=True,
        concurrent_progress=True,
    )
