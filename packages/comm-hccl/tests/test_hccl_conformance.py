"""The shared conformance suite on ``hccl`` at world sizes 1 and 2 (one NPU per rank).

Without torch_npu and an NPU every test skips with the availability probe's reason; on an Ascend host it runs
the declared ops on real NPUs (``python -m sagellm_comm.testing hccl --comm-world-sizes 1,2`` is the same gate).
"""

from sagellm_comm.testing import BackendConformance


class TestHcclConformance(BackendConformance):
    backend = "hccl"
    world_sizes = (1, 2)
