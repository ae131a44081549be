"""Fixtures of the topology tests: recorded/synthetic trees, an isolated profile cache."""

from __future__ import annotations

from pathlib import Path

import pytest

# The fixture trees are sysfs layouts, symlink cycles included (a device's ``device`` link points back up):
# pytest must never walk into them.
collect_ignore = ["fixtures", "expected"]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the user's profile cache, and no pinned topology leaks in."""
    cache = tmp_path / "topology-cache"
    monkeypatch.setenv("SAGELLM_COMM_TOPOLOGY_CACHE", str(cache))
    monkeypatch.delenv("SAGELLM_COMM_TOPOLOGY_FILE", raising=False)
    monkeypatch.delenv("SAGELLM_COMM_NODE_ID", raising=False)
    return cache
