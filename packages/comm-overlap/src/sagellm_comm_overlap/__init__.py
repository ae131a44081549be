"""sagellm-comm overlap: communication streams, a multi-stream pipeline and tensor-parallel layers that hide their
communication behind compute (docs/overlap.md).

Works with any sagellm-comm backend: on the CPU a communication executor (a worker thread) runs the collectives
while the caller computes; on an accelerator a side stream does (CUDA/ROCm, NPU with torch_npu, XPU).
"""

from sagellm_comm_overlap._version import __version__
from sagellm_comm_overlap.pipeline import COMM, COMPUTE, MultiStreamPipeline, PipelineCancelled, PipelineError, Stage
from sagellm_comm_overlap.streams import (
    CancelledError,
    CommStream,
    DeviceStream,
    StreamEvent,
    StreamTaskError,
    ThreadStream,
    comm_stream,
)
from sagellm_comm_overlap.tp import all_gather_column_parallel_linear, row_parallel_linear

__all__ = [
    "COMM",
    "COMPUTE",
    "CancelledError",
    "CommStream",
    "DeviceStream",
    "MultiStreamPipeline",
    "PipelineCancelled",
    "PipelineError",
    "Stage",
    "StreamEvent",
    "StreamTaskError",
    "ThreadStream",
    "__version__",
    "all_gather_column_parallel_linear",
    "comm_stream",
    "row_parallel_linear",
]
