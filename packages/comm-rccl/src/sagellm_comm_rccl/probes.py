"""Can the rccl backend run here? Answered from torch's build and device count, without importing the backend.

On a ROCm build of torch, ``torch.version.hip`` is set, torch.distributed's ``"nccl"`` process group is RCCL and AMD
GPUs appear as ``cuda`` devices (HIP keeps CUDA's names).
"""

from __future__ import annotations

__all__ = ["rccl_available"]


def rccl_available() -> tuple[bool, str]:
    import torch
    import torch.distributed as dist

    version = torch.__version__
    hip = getattr(torch.version, "hip", None)
    if not hip:
        built = f"a CUDA {torch.version.cuda} build" if getattr(torch.version, "cuda", None) else "a CPU build"
        return False, (
            f"torch {version} is not a ROCm build of torch (torch.version.hip is None; it is {built}); "
            "rccl needs a ROCm build (https://pytorch.org/get-started/locally/, ROCm)"
        )
    if not dist.is_available():
        return False, f"torch {version} has no torch.distributed"
    if not dist.is_nccl_available():
        return False, f"torch {version} (HIP {hip}) was built without RCCL"
    count = torch.cuda.device_count()
    if count == 0:
        return False, f"torch {version} (HIP {hip}) found no ROCm device"
    return True, f"torch {version} (HIP {hip}) with RCCL, {count} ROCm device(s)"
