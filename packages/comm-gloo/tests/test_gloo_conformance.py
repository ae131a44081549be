"""The shared conformance suite on ``gloo`` at world sizes 1-4."""

from sagellm_comm.testing import BackendConformance


class TestGlooConformance(BackendConformance):
    backend = "gloo"
    world_sizes = (1, 2, 3, 4)
