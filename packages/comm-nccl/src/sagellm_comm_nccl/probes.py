"""Can the nccl backend run here? Answered from torch's build and device count, without importing the backend.

Each "no" names the fix: a ROCm build of torch wants the rccl backend, a CPU build of torch a CUDA one, a host
without a visible GPU its driver or ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

__all__ = ["nccl_available"]


def nccl_available() -> tuple[bool, str]:
    import torch
    import torch.distributed as dist

    version = torch.__version__
    hip = getattr(torch.version, "hip", None)
    if hip:
        return False, (
            f"torch {version} is a ROCm build (HIP {hip}): its 'nccl' process group is RCCL; use the rccl "
            "backend (pip install 'isagellm-comm[rccl]')"
        )
    if not getattr(torch.version, "cuda", None):
        return False, f"torch {version} is not a CUDA build (torch.version.cuda is None); install a CUDA build of torch"
    if not dist.is_available():
        return False, f"torch {version} has no torch.distributed"
    if not dist.is_nccl_available():
        return False, f"torch {version} was built without NCCL"
    count = torch.cuda.device_count()
    if count == 0:
        return False, f"torch {version} found no CUDA device"
    nccl = ".".join(map(str, torch.cuda.nccl.version()))
    return True, f"torch {version} with NCCL {nccl}, {count} CUDA device(s)"
