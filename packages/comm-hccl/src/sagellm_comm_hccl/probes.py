"""Availability of the hccl backend (Ascend NPUs through torch_npu), answered without importing the backend module.

Cheap: torch_npu is imported only when it is installed (that import is what teaches torch the ``npu`` device and the
``hccl`` process group), and devices are counted with ``torch_npu.npu.device_count()``, which asks the driver (the
Ascend HAL) without initializing the NPU runtime, so a parent process that probes can still fork its ranks.
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec
from types import ModuleType

__all__ = ["hccl_available", "load_torch_npu", "torch_npu_install_hint"]


def torch_npu_install_hint() -> str:
    """The install line for the torch_npu matching the installed torch (torch-npu X.Y.Z[.postN] goes with torch
    X.Y.Z)."""
    import torch

    base = torch.__version__.split("+", 1)[0]
    hint = (
        f"pip install 'torch-npu=={base}.*' (the release for torch {torch.__version__}; isagellm-comm[hccl] does "
        "not pull it: torch_npu pins an exact torch)"
    )
    if getattr(torch.version, "cuda", None) or getattr(torch.version, "hip", None):
        hint += (
            f"; torch_npu is meant for the CPU build of torch (pip install torch=={base} --index-url "
            "https://download.pytorch.org/whl/cpu), and this one is built for CUDA/ROCm"
        )
    return hint


def load_torch_npu() -> tuple[ModuleType | None, str]:
    """Import torch_npu when it is installed: ``(module, "")``, or ``(None, why not and what to do)``."""
    try:
        spec = find_spec("torch_npu")
    except (ImportError, ValueError) as exc:  # a broken entry in sys.modules or on the path
        spec, error = None, exc
    else:
        error = None
    if spec is None:
        if error is not None:
            return None, f"torch_npu cannot be located ({type(error).__name__}: {error})"
        return None, f"torch_npu not installed: {torch_npu_install_hint()}"
    try:
        return import_module("torch_npu"), ""
    except Exception as exc:  # its import loads the CANN runtime: a missing toolkit or a torch mismatch shows here
        import torch

        return None, (
            f"torch_npu is installed but importing it failed ({type(exc).__name__}: {exc}); it must match "
            f"torch {torch.__version__} and the CANN toolkit environment must be set (source "
            "/usr/local/Ascend/ascend-toolkit/set_env.sh)"
        )


def hccl_available() -> tuple[bool, str]:
    """``(True, "torch_npu <ver>, N NPU device(s)")`` when HCCL can run here, else ``(False, why, what to do)``."""
    import torch.distributed as dist

    if not dist.is_available():
        return False, "this torch build has no torch.distributed"
    module, why = load_torch_npu()
    if module is None:
        return False, why
    version = getattr(module, "__version__", "?")
    is_hccl = getattr(getattr(module, "distributed", None), "is_hccl_available", None)
    if callable(is_hccl) and not is_hccl():
        return False, f"torch_npu {version} was built without HCCL support"
    try:
        count = int(module.npu.device_count())
    except Exception as exc:
        return False, f"torch_npu {version} could not count NPU devices ({type(exc).__name__}: {exc})"
    if count <= 0:
        return False, f"torch_npu {version} found no NPU device"
    return True, f"torch_npu {version}, {count} NPU device(s)"
