"""AMD GPUs as AMD SMI reports them (the ``amdsmi`` Python package ROCm ships), failing soft: without amdsmi or a
driver the answer is an empty list and the reason."""

from __future__ import annotations

from typing import Any

__all__ = ["amd_gpus"]


def amd_gpus() -> dict[str, Any]:
    try:
        import amdsmi
    except Exception as exc:  # not installed (it comes with ROCm, not from this package), or a broken install
        return {
            "gpus": [],
            "gpus_reason": f"amdsmi is not importable ({type(exc).__name__}: {exc}); it ships with "
            "ROCm (/opt/rocm/share/amd_smi)",
        }
    try:
        amdsmi.amdsmi_init()
    except Exception as exc:
        return {"gpus": [], "gpus_reason": f"amdsmi_init failed ({exc}): no amdgpu driver loaded?"}
    gpus = []
    try:
        for index, handle in enumerate(amdsmi.amdsmi_get_processor_handles()):
            gpu: dict[str, Any] = {"index": index}
            for key, call in (
                ("bdf", "amdsmi_get_gpu_device_bdf"),
                ("asic", "amdsmi_get_gpu_asic_info"),
                ("vram", "amdsmi_get_gpu_vram_info"),
            ):
                try:
                    value = getattr(amdsmi, call)(handle)
                    gpu[key] = value if isinstance(value, (str, int)) else {k: str(v) for k, v in dict(value).items()}
                except Exception as exc:  # one unreadable field must not hide the GPU
                    gpu[key] = f"unavailable: {exc}"
            gpus.append(gpu)
    except Exception as exc:
        return {"gpus": gpus, "gpus_reason": f"amdsmi listing failed: {exc}"}
    finally:
        try:
            amdsmi.amdsmi_shut_down()
        except Exception:
            pass
    return {"gpus": gpus, "gpus_reason": "ok" if gpus else "amdsmi lists no GPU"}
