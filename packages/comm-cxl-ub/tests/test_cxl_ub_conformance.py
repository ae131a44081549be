"""The shared conformance suite on ``shm`` at world sizes 1-4 (4 ranks on a 2-core machine is more ranks than cores,
where waiting strategies break) and on ``cxl`` (over the tmpfs stand-in of conftest.py) at 2 and 4: cxl is the same
engine with another region provider, so the sizes that share a region are the ones that tell it apart. ``ub`` needs a
Unified Bus segment this machine does not have; its availability reason is tested in test_regions.py."""

from sagellm_comm.testing import BackendConformance


class TestShmConformance(BackendConformance):
    backend = "shm"
    world_sizes = (1, 2, 3, 4)


class TestCxlConformance(BackendConformance):
    backend = "cxl"
    world_sizes = (2, 4)
