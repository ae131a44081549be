"""pytest plugin (entry point ``pytest11``) that runs the conformance suite: options, pools and parametrization.

Fixtures: ``comm_rank_pools`` (session) and ``comm_pools`` (per module): rank pools by world size.

Options:
- ``--comm-backend NAME`` (repeatable): the backend(s) ``BackendConformance`` subclasses without a ``backend``
  attribute are run against;
- ``--comm-world-sizes 1,2,4``: override the world sizes.
Importing this module must stay cheap: it is loaded by every pytest run where sagellm-comm is installed.
"""

from __future__ import annotations

from typing import Any

import pytest


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("sagellm-comm", "sagellm-comm conformance suite")
    group.addoption(
        "--comm-backend",
        action="append",
        default=[],
        help="backend name to run the sagellm-comm conformance suite against (repeatable)",
    )
    group.addoption(
        "--comm-world-sizes", default="", help="comma-separated world sizes for the conformance suite, e.g. 1,2,4"
    )


def _is_conformance(cls: Any) -> bool:
    from sagellm_comm.testing.suite import BackendConformance

    return cls is not None and isinstance(cls, type) and issubclass(cls, BackendConformance)


def pytest_generate_tests(metafunc: Any) -> None:
    if not _is_conformance(metafunc.cls):
        return
    cfg = metafunc.config
    if "world_size" in metafunc.fixturenames:
        raw = cfg.getoption("--comm-world-sizes")
        sizes = [int(s) for s in raw.split(",") if s.strip()] if raw else list(metafunc.cls.world_sizes)
        metafunc.parametrize("world_size", sizes, ids=[f"ws{s}" for s in sizes], scope="class")
    if "backend_name" in metafunc.fixturenames and metafunc.cls.backend is None:
        names = cfg.getoption("--comm-backend")
        if not names:
            names = metafunc.cls.default_backends()
        metafunc.parametrize("backend_name", names, ids=names, scope="class")


@pytest.fixture(scope="session")
def comm_rank_pools() -> Any:
    """Rank pools (one per world size) shared by the whole session: what the conformance suite uses."""
    from sagellm_comm.testing.runner import PoolCache

    cache = PoolCache()
    yield cache
    cache.close()


@pytest.fixture(scope="module")
def comm_pools() -> Any:
    """Rank pools for one test module (``comm_pools.get(world_size)``), closed when the module ends: for a plugin's
    own multi-rank tests, whose tasks may leave the ranks in a state later modules should not inherit."""
    from sagellm_comm.testing.runner import PoolCache

    cache = PoolCache()
    yield cache
    cache.close()
