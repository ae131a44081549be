"""Fixtures of the benchmark tests: the ``faulty`` test plugin installed as a distribution on PYTHONPATH."""

from __future__ import annotations

import os

import pytest
from bench_helpers import HERE


@pytest.fixture(scope="session")
def faulty_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment under which every process (parent and ranks) sees the ``faulty`` backend."""
    site = tmp_path_factory.mktemp("faulty_site")
    info = site / "sagellm_faulty_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sagellm-faulty-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[sagellm_comm.plugins]\nfaulty = faulty_backend\n")
    path = os.pathsep.join([str(site), str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"PYTHONPATH": path}
