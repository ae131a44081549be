"""The alpha-beta-gamma cost model of the all_reduce algorithms, over a two-level network (nodes of L ranks).

Each link class has a latency ``alpha`` (seconds per message) and an inverse bandwidth ``beta`` (seconds per byte);
``gamma`` is the local reduction's seconds per byte. For ``n`` bytes on ``p`` ranks (Thakur, Rabenseifner & Gropp
2005; the issue's formulas):

- ring: 2(p-1) a + 2((p-1)/p) n b + ((p-1)/p) n g
- recursive doubling: lg p (a + n b + n g)
- Rabenseifner: 2 lg p a + 2((p-1)/p) n b + ((p-1)/p) n g
- (not a power of two: recursive doubling and Rabenseifner add MPICH's pre/post step, 2(a + n b) + n g)
- hierarchical: the sum of its stages, reduce-scatter in the node (ring, L ranks) + all_reduce of n/L across the
  N nodes per local rank (ring; the L streams share the node's link, so it carries n/L x L) + all-gather in the node.

The other collectives (``n`` = the bytes each rank contributes, ``m = p n`` the gathered total), flat = what the
backend's own collective is modelled as, on the bottleneck link:

- all_gather / reduce_scatter: ring, (p-1) a + ((p-1)/p) m b (+ ((p-1)/p) m g); hierarchical: across the nodes
  ((N-1) a + ((N-1)/N) N n b L, the L streams sharing the link) then inside the node ((L-1) a + ((L-1)/L) m b);
- broadcast: binomial tree, ceil(lg p) (a + n b); hierarchical: ceil(lg N) (a + n b) across + ceil(lg L) inside.

A flat algorithm over ranks on several nodes is as slow as its slowest link, the inter-node one. ``native`` (the
backend's own collective) is modelled as a ring. :func:`choose` returns the cheapest with a sentence saying why;
its inputs are plain numbers, so ranks that pass the same ones choose the same algorithm.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

from sagellm_comm.rendezvous import launcher_layout

__all__ = [
    "DEFAULT_LINKS",
    "LINKS_ENV",
    "Link",
    "Network",
    "choose",
    "job_network",
    "links_from",
    "predict",
    "predict_op",
    "predictions",
]

LINKS_ENV = "SAGELLM_COMM_HIER_LINKS"
# where nothing was measured: shared memory inside a node, 10 GbE between nodes, a reduction at 10 GB/s
DEFAULT_LINKS = {"intra": [10e-6, 1 / 5e9], "inter": [50e-6, 1 / 1.25e9], "gamma": 1 / 10e9}

MODELLED = ("native", "ring", "recursive_doubling", "rabenseifner", "hierarchical")


@dataclass(frozen=True)
class Link:
    alpha_s: float  # seconds per message
    beta_s_per_byte: float  # seconds per byte

    def __post_init__(self) -> None:
        if not (self.alpha_s >= 0 and self.beta_s_per_byte >= 0):
            raise ValueError(f"link parameters must be >= 0, got alpha {self.alpha_s}, beta {self.beta_s_per_byte}")


@dataclass(frozen=True)
class Network:
    """``nodes`` nodes of ``ranks_per_node`` ranks; links inside and between nodes; reduction cost per byte."""

    nodes: int
    ranks_per_node: int
    intra: Link
    inter: Link
    gamma_s_per_byte: float = 0.0
    source: str = "given"  # where the link parameters came from (reasons quote it)

    @property
    def world_size(self) -> int:
        return self.nodes * self.ranks_per_node

    @property
    def bottleneck(self) -> Link:
        return self.inter if self.nodes > 1 else self.intra


def _ring(p: int, n: float, link: Link, g: float) -> float:
    if p <= 1:
        return 0.0
    return 2 * (p - 1) * link.alpha_s + 2 * ((p - 1) / p) * n * link.beta_s_per_byte + ((p - 1) / p) * n * g


def _fold(p: int, n: float, link: Link, g: float) -> float:
    """MPICH's pre/post step when p is not a power of two."""
    return 0.0 if p & (p - 1) == 0 else 2 * (link.alpha_s + n * link.beta_s_per_byte) + n * g


def predict(algo: str, nbytes: int, net: Network) -> float:
    """Predicted seconds of an all_reduce of ``nbytes`` with ``algo`` on ``net``."""
    p, n, g = net.world_size, float(nbytes), net.gamma_s_per_byte
    if p <= 1:
        return 0.0
    link = net.bottleneck
    lg = math.floor(math.log2(p))
    if algo in ("native", "ring"):
        return _ring(p, n, link, g)
    if algo == "recursive_doubling":
        return lg * (link.alpha_s + n * link.beta_s_per_byte + n * g) + _fold(p, n, link, g)
    if algo == "rabenseifner":
        q = 1 << lg
        return (
            2 * lg * link.alpha_s
            + 2 * ((q - 1) / q) * n * link.beta_s_per_byte
            + ((q - 1) / q) * n * g
            + _fold(p, n, link, g)
        )
    if algo == "hierarchical":
        L, N = net.ranks_per_node, net.nodes
        intra_half = 0.0 if L == 1 else (L - 1) * net.intra.alpha_s + ((L - 1) / L) * n * net.intra.beta_s_per_byte
        reduce_in_node = intra_half + (0.0 if L == 1 else ((L - 1) / L) * n * g)
        shared = Link(net.inter.alpha_s, net.inter.beta_s_per_byte * L)  # L streams share the node's link
        across = _ring(N, n / L, shared, g)
        return reduce_in_node + across + intra_half
    raise ValueError(f"no cost model for algorithm {algo!r}; modelled: {', '.join(MODELLED)}")


def _lg(p: int) -> int:
    return 0 if p <= 1 else math.ceil(math.log2(p))


def predict_op(op: str, algo: str, nbytes: int, net: Network) -> float:
    """Predicted seconds of ``op`` (all_reduce, all_gather, reduce_scatter, broadcast) with ``algo`` ("native"/"flat"
    or "hierarchical"); ``nbytes``: the tensor of all_reduce and broadcast, each rank's block of all_gather and
    reduce_scatter."""
    if op == "all_reduce":
        return predict("native" if algo == "flat" else algo, nbytes, net)
    p, n, g, L, N = net.world_size, float(nbytes), net.gamma_s_per_byte, net.ranks_per_node, net.nodes
    if p <= 1:
        return 0.0
    flat, hier = algo in ("flat", "native", "ring"), algo == "hierarchical"
    if not (flat or hier):
        raise ValueError(f"no cost model for {op} with {algo!r}; modelled: flat, hierarchical")
    shared = Link(net.inter.alpha_s, net.inter.beta_s_per_byte * L)
    if op in ("all_gather", "reduce_scatter"):
        red = op == "reduce_scatter"
        m = p * n
        if flat:
            link = net.bottleneck
            return (p - 1) * link.alpha_s + ((p - 1) / p) * m * (link.beta_s_per_byte + (g if red else 0.0))
        across = (
            0.0
            if N == 1
            else (N - 1) * shared.alpha_s + ((N - 1) / N) * N * n * (shared.beta_s_per_byte + (g if red else 0.0))
        )
        inside = (
            0.0
            if L == 1
            else (L - 1) * net.intra.alpha_s + ((L - 1) / L) * m * (net.intra.beta_s_per_byte + (g if red else 0.0))
        )
        return across + inside
    if op == "broadcast":
        if flat:
            link = net.bottleneck
            return _lg(p) * (link.alpha_s + n * link.beta_s_per_byte)
        return _lg(N) * (net.inter.alpha_s + n * net.inter.beta_s_per_byte) + _lg(L) * (
            net.intra.alpha_s + n * net.intra.beta_s_per_byte
        )
    raise ValueError(f"no cost model for op {op!r}; modelled: all_reduce, all_gather, reduce_scatter, broadcast")


def predictions(nbytes: int, net: Network, algos: tuple[str, ...] = MODELLED) -> dict[str, float]:
    return {a: predict(a, nbytes, net) for a in algos}


def choose(nbytes: int, net: Network, algos: tuple[str, ...] = MODELLED, op: str = "all_reduce") -> tuple[str, str]:
    """(algorithm, reason): the cheapest predicted; ties go to the earlier name in ``algos``."""
    times = {a: predict_op(op, a, nbytes, net) for a in algos}
    best = min(algos, key=lambda a: (times[a], algos.index(a)))
    runner = min((a for a in algos if a != best), key=lambda a: (times[a], algos.index(a)), default=None)
    ratio = net.inter.beta_s_per_byte / net.intra.beta_s_per_byte if net.intra.beta_s_per_byte else math.inf
    shape = f"{net.nodes} node(s) x {net.ranks_per_node} rank(s), inter-node beta {ratio:.1f}x intra"
    versus = f" vs {runner} {times[runner] * 1e3:.2f} ms" if runner is not None else ""
    return best, f"{best}: {shape}; predicted {times[best] * 1e3:.2f} ms{versus}"


def links_from(raw: Any, source: str) -> tuple[Link, Link, float]:
    """(intra, inter, gamma) from ``{"intra": [alpha_s, beta_s_per_byte], "inter": [...], "gamma": s_per_byte}`` or
    its JSON text; ValueError names what is wrong."""
    try:
        data = json.loads(raw) if isinstance(raw, str) else dict(raw)
        intra, inter = (Link(float(data[k][0]), float(data[k][1])) for k in ("intra", "inter"))
        return intra, inter, float(data.get("gamma", 0.0))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ValueError(
            f'{source}: link parameters must be {{"intra": [alpha_s, beta_s_per_byte], "inter": '
            f'[alpha_s, beta_s_per_byte], "gamma": s_per_byte}}, got {raw!r} '
            f"({type(exc).__name__}: {exc})"
        ) from None


def job_network(world_size: int, env: Any = None) -> tuple[int | None, Network | None]:
    """(nodes, network) of a job from the launcher's environment: LOCAL_WORLD_SIZE ranks per node (torchrun's
    placement) when WORLD_SIZE is this world; link parameters from ``SAGELLM_COMM_HIER_LINKS``, else
    ``DEFAULT_LINKS``. Only the environment is read, which the launcher gives every rank alike, so every rank gets
    the same network. (None, None) when the environment does not say."""
    env = os.environ if env is None else env
    layout = launcher_layout(env)
    if layout is None or layout[0] != world_size:
        return None, None
    per_node = layout[1]
    nodes = math.ceil(world_size / per_node)
    raw = env.get(LINKS_ENV)
    intra, inter, gamma = links_from(raw if raw else DEFAULT_LINKS, LINKS_ENV if raw else "defaults")
    source = LINKS_ENV if raw else f"defaults (10 GbE between nodes; set {LINKS_ENV} to measured ones)"
    return nodes, Network(nodes, per_node, intra, inter, gamma, source=source)
