"""``RcclBackend``: the contract on AMD GPUs (ROCm builds of torch).

RCCL implements NCCL's API, and torch's ROCm build runs its ``"nccl"`` process group on it, with AMD GPUs as
``cuda`` devices; so this is the nccl backend with the ROCm probe and the direct path bound to librccl (found next to
torch or in ROCm's install; ``SAGELLM_COMM_RCCL_LIBRARY`` overrides). HIP graphs capture the direct path as CUDA
graphs do on NVIDIA.
"""

from __future__ import annotations

from typing import ClassVar

from sagellm_comm_nccl.backend import NcclBackend
from sagellm_comm_rccl.probes import rccl_available

__all__ = ["RcclBackend"]


class RcclBackend(NcclBackend):
    name: ClassVar[str] = "rccl"
    torch_backend: ClassVar[str] = "nccl"  # torch.distributed's name for RCCL on ROCm builds
    library_flavor: ClassVar[str] = "rccl"

    @classmethod
    def probe(cls) -> tuple[bool, str]:
        return rccl_available()
