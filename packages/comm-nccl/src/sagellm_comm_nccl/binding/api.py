"""The NCCL C API as ctypes sees it: types, enums and the table of every function the binding calls.

Transcribed from ``nccl.h`` (NVIDIA/nccl ``src/nccl.h.in``); RCCL exports the same symbols with the same signatures,
so one table serves both. Only ctypes is imported here: tests resolve every entry against the real library without
a GPU.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

__all__ = [
    "FUNCTIONS",
    "NCCL_UNIQUE_ID_BYTES",
    "OPTIONAL_FUNCTIONS",
    "RESULT_NAMES",
    "DataType",
    "Function",
    "RedOp",
    "ncclComm_t",
    "ncclResult_t",
    "ncclUniqueId",
]

NCCL_UNIQUE_ID_BYTES = 128

ncclResult_t = ctypes.c_int
ncclComm_t = ctypes.c_void_p
ncclDataType_t = ctypes.c_int
ncclRedOp_t = ctypes.c_int
cudaStream_t = ctypes.c_void_p
buffer_t = ctypes.c_void_p


class ncclUniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_byte * NCCL_UNIQUE_ID_BYTES)]


RESULT_NAMES = {
    0: "ncclSuccess",
    1: "ncclUnhandledCudaError",
    2: "ncclSystemError",
    3: "ncclInternalError",
    4: "ncclInvalidArgument",
    5: "ncclInvalidUsage",
    6: "ncclRemoteError",
    7: "ncclInProgress",
}


class DataType:
    """``ncclDataType_t`` values (stable since NCCL 2.0; bfloat16 since 2.10)."""

    INT8 = 0
    UINT8 = 1
    INT32 = 2
    UINT32 = 3
    INT64 = 4
    UINT64 = 5
    FLOAT16 = 6
    FLOAT32 = 7
    FLOAT64 = 8
    BFLOAT16 = 9


class RedOp:
    """``ncclRedOp_t`` values (AVG since NCCL 2.10)."""

    SUM = 0
    PROD = 1
    MAX = 2
    MIN = 3
    AVG = 4


@dataclass(frozen=True)
class Function:
    name: str
    restype: object
    argtypes: tuple[object, ...]


_P = ctypes.POINTER
FUNCTIONS: tuple[Function, ...] = (
    # const char* ncclGetErrorString(ncclResult_t result)
    Function("ncclGetErrorString", ctypes.c_char_p, (ncclResult_t,)),
    # ncclResult_t ncclGetVersion(int *version)
    Function("ncclGetVersion", ncclResult_t, (_P(ctypes.c_int),)),
    # ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId)
    Function("ncclGetUniqueId", ncclResult_t, (_P(ncclUniqueId),)),
    # ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank)
    Function("ncclCommInitRank", ncclResult_t, (_P(ncclComm_t), ctypes.c_int, ncclUniqueId, ctypes.c_int)),
    # ncclResult_t ncclCommDestroy(ncclComm_t comm)
    Function("ncclCommDestroy", ncclResult_t, (ncclComm_t,)),
    # ncclResult_t ncclCommAbort(ncclComm_t comm)
    Function("ncclCommAbort", ncclResult_t, (ncclComm_t,)),
    # ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *asyncError)
    Function("ncclCommGetAsyncError", ncclResult_t, (ncclComm_t, _P(ncclResult_t))),
    # ncclResult_t ncclCommCount(const ncclComm_t comm, int* count)
    Function("ncclCommCount", ncclResult_t, (ncclComm_t, _P(ctypes.c_int))),
    # ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int* device)
    Function("ncclCommCuDevice", ncclResult_t, (ncclComm_t, _P(ctypes.c_int))),
    # ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank)
    Function("ncclCommUserRank", ncclResult_t, (ncclComm_t, _P(ctypes.c_int))),
    # ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
    #                            ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream)
    Function(
        "ncclAllReduce",
        ncclResult_t,
        (buffer_t, buffer_t, ctypes.c_size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t),
    ),
    # ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount, ncclDataType_t datatype,
    #                            ncclComm_t comm, cudaStream_t stream)
    Function(
        "ncclAllGather", ncclResult_t, (buffer_t, buffer_t, ctypes.c_size_t, ncclDataType_t, ncclComm_t, cudaStream_t)
    ),
    # ncclResult_t ncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
    #                                ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream)
    Function(
        "ncclReduceScatter",
        ncclResult_t,
        (buffer_t, buffer_t, ctypes.c_size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t),
    ),
    # ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
    #                            int root, ncclComm_t comm, cudaStream_t stream)
    Function(
        "ncclBroadcast",
        ncclResult_t,
        (buffer_t, buffer_t, ctypes.c_size_t, ncclDataType_t, ctypes.c_int, ncclComm_t, cudaStream_t),
    ),
    # ncclResult_t ncclReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
    #                         ncclRedOp_t op, int root, ncclComm_t comm, cudaStream_t stream)
    Function(
        "ncclReduce",
        ncclResult_t,
        (buffer_t, buffer_t, ctypes.c_size_t, ncclDataType_t, ncclRedOp_t, ctypes.c_int, ncclComm_t, cudaStream_t),
    ),
    # ncclResult_t ncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype, int peer,
    #                       ncclComm_t comm, cudaStream_t stream)
    Function(
        "ncclSend", ncclResult_t, (buffer_t, ctypes.c_size_t, ncclDataType_t, ctypes.c_int, ncclComm_t, cudaStream_t)
    ),
    # ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype, int peer,
    #                       ncclComm_t comm, cudaStream_t stream)
    Function(
        "ncclRecv", ncclResult_t, (buffer_t, ctypes.c_size_t, ncclDataType_t, ctypes.c_int, ncclComm_t, cudaStream_t)
    ),
    # ncclResult_t ncclGroupStart(); ncclResult_t ncclGroupEnd()
    Function("ncclGroupStart", ncclResult_t, ()),
    Function("ncclGroupEnd", ncclResult_t, ()),
)

# present in newer releases only (looked up when there, never required)
OPTIONAL_FUNCTIONS: tuple[Function, ...] = (
    # const char* ncclGetLastError(ncclComm_t comm)  (NCCL >= 2.13)
    Function("ncclGetLastError", ctypes.c_char_p, (ncclComm_t,)),
)
