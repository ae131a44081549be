"""Link profiler: latency (alpha) and bandwidth (beta) between rank pairs, measured through any backend.

For each pair (one inside each node with two or more ranks, one between each two nodes) the lower rank leads:
small ping-pongs give alpha (half the median round trip), bulk transfers each acknowledged by a small message give
beta (bytes / (median time - alpha)). The leader sizes the iteration counts from a calibration round so each pair
stays inside its share of ``budget_s``, and tells the follower; every blocking call is bounded by the backend's
timeout. Results are exchanged so every rank returns the same profile, and cached per topology fingerprint.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from sagellm_comm.backend import CommBackend
from sagellm_comm.errors import BackendNotSupportedError, InvalidArgumentError
from sagellm_comm_topology.cache import ProfileCache
from sagellm_comm_topology.cluster import ClusterTopology
from sagellm_comm_topology.exchange import all_gather_json

__all__ = ["ProfileConfig", "measure_pair", "profile_links", "profile_or_reuse", "representative_pairs"]


@dataclass(frozen=True)
class ProfileConfig:
    small_bytes: int = 8
    bulk_bytes: int = 4 << 20
    budget_s: float = 8.0  # for all pairs together
    min_small: int = 10
    max_small: int = 200
    min_bulk: int = 2
    max_bulk: int = 20

    def __post_init__(self) -> None:
        if self.small_bytes < 1 or self.bulk_bytes < self.small_bytes or not self.budget_s > 0:
            raise InvalidArgumentError(
                f"invalid profiler config {self}: need 1 <= small_bytes <= bulk_bytes and budget_s > 0"
            )


def representative_pairs(cluster: ClusterTopology) -> list[tuple[int, int]]:
    """One pair inside each node that has two ranks or more, one pair between each two nodes (lowest ranks)."""
    firsts = []
    pairs = []
    for node in cluster.nodes:
        ranks = sorted(cluster.ranks_on(node.name))
        if not ranks:
            continue
        firsts.append(ranks[0])
        if len(ranks) >= 2:
            pairs.append((ranks[0], ranks[1]))
    for i, a in enumerate(firsts):
        pairs.extend((min(a, b), max(a, b)) for b in firsts[i + 1 :])
    return pairs


def _buffer_dtype(backend: CommBackend) -> torch.dtype:
    caps = backend.capabilities
    if not (caps.supports_op("send") and caps.supports_op("recv")):
        raise BackendNotSupportedError(
            f"{backend.name}: the link profiler needs send/recv, which this backend does not declare"
        )
    for dt in (torch.uint8, torch.float32, torch.int32, torch.int64):
        if dt in caps.dtypes:
            return dt
    raise BackendNotSupportedError(f"{backend.name}: no dtype the profiler can send")


def _tensor(nbytes: int, dt: torch.dtype, dev: torch.device) -> torch.Tensor:
    itemsize = torch.empty((), dtype=dt).element_size()
    return torch.zeros(max(1, nbytes // itemsize), dtype=dt, device=dev)


def _clamp(x: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(x)))


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def measure_pair(
    backend: CommBackend, leader: int, follower: int, budget_s: float, cfg: ProfileConfig, group: Any = None
) -> dict[str, Any] | None:
    """Called by both ranks of the pair (others must not call it); the leader returns the measurement."""
    me = backend.get_rank(group)
    lead = me == leader
    peer = follower if lead else leader
    dt, dev = _buffer_dtype(backend), backend.device
    small, bulk = _tensor(cfg.small_bytes, dt, dev), _tensor(cfg.bulk_bytes, dt, dev)
    nbytes = bulk.numel() * bulk.element_size()

    def round_trip(payload: Any) -> None:
        """``payload`` one way, a small acknowledgement back."""
        if lead:
            backend.send(payload, peer, group)
            backend.recv(small, peer, group)
        else:
            backend.recv(payload, peer, group)
            backend.send(small, peer, group)

    def ping() -> None:
        round_trip(small)

    def push() -> None:
        round_trip(bulk)

    def timed(fn: Any) -> float:
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        return time.perf_counter() - t0

    for _ in range(3):
        ping()
    t_small = max(min(timed(ping) for _ in range(3)), 1e-6)
    t_bulk = max(timed(push), 1e-6)  # also warms the bulk path up
    count_dt = next((x for x in (torch.int64, torch.float32, torch.int32) if x in backend.capabilities.dtypes), dt)
    counts = torch.zeros(2, dtype=count_dt, device=dev)
    if lead:
        counts[0] = _clamp(budget_s * 0.2 / t_small, cfg.min_small, cfg.max_small)
        counts[1] = _clamp(budget_s * 0.8 / t_bulk, cfg.min_bulk, cfg.max_bulk)
        backend.send(counts, peer, group)
    else:
        backend.recv(counts, peer, group)
    n_small, n_bulk = int(counts[0].item()), int(counts[1].item())
    rtts = [timed(ping) for _ in range(n_small)]
    pushes = [timed(push) for _ in range(n_bulk)]
    if not lead:
        return None
    alpha = statistics.median(rtts) / 2.0
    one_way = max(statistics.median(pushes) - alpha, 1e-9)
    return {
        "a": leader,
        "b": follower,
        "alpha_us": round(alpha * 1e6, 3),
        "beta_gbps": round(nbytes / one_way / 1e9, 6),
        "bulk_bytes": nbytes,
        "samples_small": n_small,
        "samples_bulk": n_bulk,
    }


def profile_links(
    backend: CommBackend,
    cluster: ClusterTopology,
    *,
    pairs: list[tuple[int, int]] | None = None,
    config: ProfileConfig | None = None,
    group: Any = None,
) -> dict[str, Any]:
    """Collective: measure every pair (default: ``representative_pairs``), one pair at a time; every rank returns
    the same profile dict (``pairs`` with alpha_us and beta_gbps, plus backend, fingerprint, created)."""
    cfg = config or ProfileConfig()
    todo = list(pairs) if pairs is not None else representative_pairs(cluster)
    me = backend.get_rank(group)
    share = cfg.budget_s / max(len(todo), 1)
    mine = []
    started, t0 = time.time(), time.monotonic()
    for a, b in todo:
        if a == b:
            raise InvalidArgumentError(f"profiler pair ({a}, {b}) names one rank twice")
        backend.barrier(group)  # one pair at a time: no two measurements share a link or a core
        if me in (a, b):
            result = measure_pair(backend, a, b, share, cfg, group)
            if result is not None:
                ra, rb = cluster.rank(a), cluster.rank(b)
                result.update(a_node=ra.node, b_node=rb.node, scope="intra" if ra.node == rb.node else "inter")
                mine.append(result)
    parts = all_gather_json(backend, {"started": started, "elapsed": time.monotonic() - t0, "pairs": mine}, group)
    results = [r for part in parts for r in part["pairs"]]
    # the same dict on every rank: the earliest start, the longest elapsed time
    return {
        "backend": backend.name,
        "fingerprint": cluster.fingerprint(),
        "created": min(p["started"] for p in parts),
        "elapsed_s": round(max(p["elapsed"] for p in parts), 3),
        "config": asdict(cfg),
        "pairs": sorted(results, key=lambda r: (r["a"], r["b"])),
    }


def profile_or_reuse(
    backend: CommBackend,
    cluster: ClusterTopology,
    *,
    cache: ProfileCache | None = None,
    refresh: bool = False,
    config: ProfileConfig | None = None,
    group: Any = None,
) -> tuple[dict[str, Any], bool]:
    """Collective: the cached profile for this topology and backend if any rank has one (and not ``refresh``),
    else a fresh measurement stored in the cache (by the first rank of each node). Applies it to ``cluster``.
    Returns (profile, reused)."""
    cache = cache or ProfileCache()
    fp = cluster.fingerprint()
    cached = None if refresh else cache.load(fp, backend.name)
    offers = all_gather_json(backend, cached, group)
    found = next((p for p in offers if p), None)
    if found is not None:
        cluster.apply_profile(found)
        return found, True
    profile = profile_links(backend, cluster, config=config, group=group)
    me = backend.get_rank(group)
    info = next((r for r in cluster.ranks if r.rank == me), None)
    if info is None or info.local_rank == 0:
        cache.store(profile)
    cluster.apply_profile(profile)
    return profile, False
