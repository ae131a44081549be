"""The shared conformance suite on ``rdma`` at world sizes 2 and 4: the point-to-point part (ordering, tags, every
pair, batched ring, non-contiguous tensors). Collectives are declared unsupported, so their tests skip."""

from sagellm_comm.testing import BackendConformance


class TestRdmaBackendConformance(BackendConformance):
    backend = "rdma"
    world_sizes = (2, 4)
