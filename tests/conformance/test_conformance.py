"""The shared conformance suite against every backend installed and available in this environment (gloo; shm and
cxl -- over a tmpfs directory standing in for CXL memory, see tests/conftest.py -- when comm-cxl-ub is installed;
every plugin a later issue adds), at world sizes 1, 2, 3 and 4 (4 ranks on this 2-core machine: more ranks than
cores, which is where waiting strategies break)."""

from sagellm_comm.testing import BackendConformance


class TestInstalledBackends(BackendConformance):
    world_sizes = (1, 2, 3, 4)
