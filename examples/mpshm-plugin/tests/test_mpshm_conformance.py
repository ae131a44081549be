"""The shared conformance suite on ``mpshm``: every declared op, dtype and reduce op against the CPU reference on
1, 2 and 4 ranks; the undeclared ones (sub-groups, async, P2P, ...) skip with the reason."""

from sagellm_comm.testing import BackendConformance


class TestMpshmConformance(BackendConformance):
    backend = "mpshm"
