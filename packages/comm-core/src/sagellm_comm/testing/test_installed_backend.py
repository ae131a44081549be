"""The packaged suite run by ``python -m sagellm_comm.testing NAME`` (the backend comes from --comm-backend)."""

from sagellm_comm.testing.suite import BackendConformance


class TestConformance(BackendConformance):
    pass
