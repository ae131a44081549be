"""Shared fixtures: one rank pool per world size and test module (spawning ranks costs seconds)."""

import pytest

from sagellm_comm.testing.runner import PoolCache


@pytest.fixture(scope="module")
def pools():
    cache = PoolCache()
    yield cache
    cache.close()
