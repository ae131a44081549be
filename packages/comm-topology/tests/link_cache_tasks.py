"""Rank functions for test_link_cache.py (module-level so spawned ranks import them by name)."""

from __future__ import annotations

from sagellm_comm import get_comm_backend


def init_twice() -> list[str]:
    """Init the hier composite twice (nodes simulated): the first measures and caches, the second reuses."""
    sources = []
    for _ in range(2):
        comm = get_comm_backend("hier", ranks_per_node=2)
        comm.init_process_group(timeout=60.0)
        try:
            sources.append(comm.links.source)
            assert comm.explain("all_reduce", 1 << 20).reason.endswith(f"({comm.links.source})")
        finally:
            comm.destroy()
    return sources
