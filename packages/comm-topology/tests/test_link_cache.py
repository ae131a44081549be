"""The hier composite's link parameters through comm-topology's profile cache: measured once, cached under the
cluster's fingerprint and both transports' names, then reused, the same on every rank."""

from __future__ import annotations

import json
from pathlib import Path

import link_cache_tasks
import pytest

from sagellm_comm.errors import CommError
from sagellm_comm.launch import RankPool
from sagellm_comm.registry import get_comm_backend

pytestmark = pytest.mark.multirank


def test_measured_once_then_reused(isolated_cache: Path) -> None:
    try:
        from sagellm_comm.composite.transports import choose_transports

        t = choose_transports("cpu")
        get_comm_backend("hier")
    except CommError as exc:
        pytest.skip(f"the hier composite has no transports here: {exc.message}")
    with RankPool(4, env={"SAGELLM_COMM_TOPOLOGY_CACHE": str(isolated_cache)}) as pool:
        results = pool.run(link_cache_tasks.init_twice, timeout=180)
    assert all(r == results[0] for r in results), "ranks got different link parameters"
    first, second = results[0]
    key = f"hier:{t.intra.name}+{t.inter.name}"
    assert first.startswith("measured at init, cached by comm-topology as ") and first.endswith(key)
    assert second.startswith("comm-topology cache ") and key in second
    [cached] = list(isolated_cache.glob("*.json"))
    entry = json.loads(cached.read_text())["profiles"][key]
    assert set(entry["links"]) == {"intra", "inter", "gamma"}
    assert {p["scope"] for p in entry["pairs"]} == {"intra", "inter"}
