"""The shared conformance suite against every backend installed in this environment (gloo, and every plugin a
later issue adds), at world sizes 1, 2 and 4."""

from sagellm_comm.testing import BackendConformance


class TestInstalledBackends(BackendConformance):
    pass
