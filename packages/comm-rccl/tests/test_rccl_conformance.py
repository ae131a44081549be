"""The shared conformance suite on ``rccl`` (one AMD GPU per rank; on a host without a ROCm build of torch and a GPU
the class skips with the probe's reason)."""

from sagellm_comm.testing import BackendConformance


class TestRcclConformance(BackendConformance):
    backend = "rccl"
    world_sizes = (1, 2)
