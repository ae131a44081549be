"""Link parameters for the hier composite, from this cluster's profile cache: reused when cached, else measured
once (by the composite) and cached under the cluster's fingerprint.

The entry's key names both transports (``hier:shm+gloo``), so a profile measured through other backends is never
taken for theirs. Every rank offers what its own cache holds and every rank takes the first offer, so all ranks get
the same numbers (their choices depend on them: ranks choosing differently would deadlock).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sagellm_comm.backend import CommBackend
from sagellm_comm_topology.cache import ProfileCache
from sagellm_comm_topology.exchange import all_gather_json
from sagellm_comm_topology.gather import gather_cluster

__all__ = ["cache_key", "cached_or_measured"]


def cache_key(transports: tuple[str, str]) -> str:
    return f"hier:{transports[0]}+{transports[1]}"


def _usable(entry: Any) -> bool:
    links = entry.get("links") if isinstance(entry, dict) else None
    return isinstance(links, dict) and all(
        isinstance(links.get(k), list) and len(links[k]) == 2 for k in ("intra", "inter")
    )


def cached_or_measured(
    backend: CommBackend,
    transports: tuple[str, str],
    measure: Callable[[], dict[str, Any]],
    cache: ProfileCache | None = None,
) -> dict[str, Any]:
    """Collective over ``backend``'s world."""
    cache = cache or ProfileCache()
    cluster = gather_cluster(backend)
    fp, key = cluster.fingerprint(), cache_key(transports)
    mine = cache.load(fp, key)
    offers = all_gather_json(backend, mine if _usable(mine) else None)
    found = next((o for o in offers if o), None)
    if found is not None:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(found.get("created", 0)))
        return {
            **found["links"],
            "pairs": found.get("pairs", []),
            "source": f"comm-topology cache {fp}/{key}, measured {stamp}",
        }
    links = measure()
    entry = {
        "backend": key,
        "fingerprint": fp,
        "created": time.time(),
        "pairs": links.get("pairs", []),
        "links": {k: links[k] for k in ("intra", "inter", "gamma")},
    }
    me = backend.get_rank()
    if next((r.local_rank for r in cluster.ranks if r.rank == me), 0) == 0:  # one writer per node
        cache.store(entry)
    return {**links, "source": f"measured at init, cached by comm-topology as {fp}/{key}"}
