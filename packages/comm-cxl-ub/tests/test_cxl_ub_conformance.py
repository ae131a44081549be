"""The shared conformance suite on ``shm`` at world sizes 1-4 (4 ranks on a 2-core machine is more ranks than cores,
where waiting strategies break), on both engine paths -- the native one (the default where it was built) and the
Python fallback -- and on ``cxl`` (over the tmpfs stand-in of conftest.py) at 2 and 4: cxl is the same engine with
another region provider, so the sizes that share a region are the ones that tell it apart. ``ub`` needs a Unified
Bus segment this machine does not have; its availability reason is tested in test_regions.py."""

from typing import Any

import pytest

from sagellm_comm.testing import BackendConformance
from sagellm_comm.testing.runner import PoolCache


class TestShmConformance(BackendConformance):
    backend = "shm"
    world_sizes = (1, 2, 3, 4)


class TestShmPythonEngineConformance(BackendConformance):
    """The fallback, where the native library is absent: forced with SAGELLM_COMM_SHM_ENGINE=python."""

    backend = "shm"
    world_sizes = (1, 2, 3, 4)

    @pytest.fixture(scope="class")
    @classmethod
    def comm_rank_pools(cls) -> Any:
        cache = PoolCache(env={"SAGELLM_COMM_SHM_ENGINE": "python"})  # its own ranks: the engine is chosen at init
        yield cache
        cache.close()


class TestCxlConformance(BackendConformance):
    backend = "cxl"
    world_sizes = (2, 4)
