"""Element types the benchmarks accept, by name and alias."""

from __future__ import annotations

import torch

from sagellm_comm.errors import InvalidArgumentError

__all__ = ["DTYPES", "dtype_name", "itemsize", "resolve_dtype"]

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "int32": torch.int32,
    "int64": torch.int64,
}
"""The dtypes a benchmark accepts, by the name the command line uses."""
_ALIASES = {
    "float": "float32",
    "fp32": "float32",
    "half": "float16",
    "fp16": "float16",
    "bf16": "bfloat16",
    "double": "float64",
    "fp64": "float64",
    "int": "int32",
    "long": "int64",
}


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """``"float32"`` (or an alias: ``fp16``, ``bf16``, ...) -> ``torch.float32``; else InvalidArgumentError."""
    if isinstance(name, torch.dtype):
        if name in DTYPES.values():
            return name
        raise InvalidArgumentError(f"unsupported dtype {name}; choose one of: {', '.join(DTYPES)}")
    key = str(name).strip().lower().removeprefix("torch.")
    key = _ALIASES.get(key, key)
    if key not in DTYPES:
        raise InvalidArgumentError(f"unknown dtype {name!r}; choose one of: {', '.join(DTYPES)}")
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
