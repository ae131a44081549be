"""The shared conformance suite on ``nccl`` (one GPU per rank: world sizes beyond the host's GPU count skip with the
reason; on a host without a GPU the whole class skips with the probe's reason)."""

from sagellm_comm.testing import BackendConformance


class TestNcclConformance(BackendConformance):
    backend = "nccl"
    world_sizes = (1, 2)
