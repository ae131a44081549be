"""The direct path's vendor binding: NCCL/RCCL through ctypes, on torch tensors and CUDA streams.

Importable without ``sagellm_comm`` (it needs only torch and ctypes), so it runs under any Python torch supports:
the GPU check (tools/gpu-check) uses it where the full stack, whose protocol package is CPython 3.11 bytecode, does
not import.
"""

from sagellm_comm_nccl.binding.communicator import DTYPES, NcclCommunicator, NcclTimeout, reduce_op_code
from sagellm_comm_nccl.binding.library import (
    MIN_VERSION,
    LibraryNotFound,
    NcclError,
    NcclLibrary,
    decode_version,
    find_library,
    library_candidates,
)

__all__ = [
    "DTYPES",
    "MIN_VERSION",
    "LibraryNotFound",
    "NcclCommunicator",
    "NcclError",
    "NcclLibrary",
    "NcclTimeout",
    "decode_version",
    "find_library",
    "library_candidates",
    "reduce_op_code",
]
