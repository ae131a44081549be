"""The link parameters the composite's cost model runs on: identical on every rank.

In order: ``links=`` / ``SAGELLM_COMM_HIER_LINKS``; else a plugin's ``sagellm_comm_link_parameters`` hook
(comm-topology returns the profile it cached for this cluster and these transports, or measures once and caches);
else measured at init, as follows.

The first two ranks of the first node holding two ping-pong over the intra transport (alpha from 4 B, beta from
1 MiB); world rank 0 ping-pongs with the first rank of the next node over the inter transport (4 MiB: a shaped
link's burst does not hide its rate), times a local reduction (gamma), and publishes the numbers through the side
channel; every rank reads the same
ones, so every rank makes the same choices (a rank choosing otherwise would deadlock its peers).

``links=`` (a backend option) or ``SAGELLM_COMM_HIER_LINKS`` (JSON) replaces the measurement:
``{"intra": [alpha_s, beta_s_per_byte], "inter": [alpha_s, beta_s_per_byte], "gamma": s_per_byte}``.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

import torch

from sagellm_comm.algorithms.cost import LINKS_ENV, Link, links_from
from sagellm_comm.errors import InvalidArgumentError

__all__ = ["LINKS_ENV", "LinkParams", "measure_links", "parse_links"]

REPS = 3


class LinkParams:
    def __init__(
        self, intra: Link, inter: Link, gamma: float, source: str, pairs: list[dict[str, Any]] | None = None
    ) -> None:
        self.intra, self.inter, self.gamma, self.source = intra, inter, gamma, source
        self.pairs = pairs or []  # the measured rank pairs, in comm-topology's profile format

    def to_dict(self) -> dict[str, Any]:
        return {
            "intra": [self.intra.alpha_s, self.intra.beta_s_per_byte],
            "inter": [self.inter.alpha_s, self.inter.beta_s_per_byte],
            "gamma": self.gamma,
            "source": self.source,
            "pairs": self.pairs,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def describe(self) -> str:
        def bw(link: Link) -> str:
            return f"{1e-9 / link.beta_s_per_byte:.2f} GB/s" if link.beta_s_per_byte else "unbounded"

        return (
            f"intra alpha {self.intra.alpha_s * 1e6:.0f} us, {bw(self.intra)}; inter alpha "
            f"{self.inter.alpha_s * 1e6:.0f} us, {bw(self.inter)} ({self.source})"
        )


def parse_links(raw: Any, source: str) -> LinkParams:
    """``raw``: a dict or its JSON text; InvalidArgumentError names what is wrong."""
    try:
        intra, inter, gamma = links_from(raw, source)
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    data = json.loads(raw) if isinstance(raw, str) else dict(raw)
    pairs = data.get("pairs") if isinstance(data.get("pairs"), list) else None
    return LinkParams(intra, inter, gamma, str(data.get("source", source)), pairs)


def configured_links(options: dict[str, Any]) -> LinkParams | None:
    if options.get("links") is not None:
        return parse_links(options["links"], "links= option")
    raw = os.environ.get(LINKS_ENV)
    return parse_links(raw, LINKS_ENV) if raw else None


def _ping_pong(comm: Any, peer: int, nbytes: int, leader: bool) -> float:
    """Half the median round trip of ``nbytes`` between this rank and ``peer`` (a rank of ``comm``'s world)."""
    t = torch.zeros(max(1, nbytes // 4))
    times = []
    for _ in range(REPS + 1):
        t0 = time.perf_counter()
        if leader:
            comm.send(t, peer)
            comm.recv(t, peer)
        else:
            comm.recv(t, peer)
            comm.send(t, peer)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]) / 2


def _link(comm: Any, peer: int, leader: bool, big: int) -> Link:
    alpha = _ping_pong(comm, peer, 4, leader)
    full = _ping_pong(comm, peer, big, leader)
    return Link(alpha, max(full - alpha, 0.0) / big)


def _pair(a: int, b: int, link: Link, scope: str, bulk: int) -> dict[str, Any]:
    gbps = round(1e-9 / link.beta_s_per_byte, 4) if link.beta_s_per_byte else None
    return {
        "a": a,
        "b": b,
        "alpha_us": round(link.alpha_s * 1e6, 3),
        "beta_gbps": gbps,
        "bulk_bytes": bulk,
        "samples_small": REPS,
        "samples_bulk": REPS,
        "scope": scope,
    }


def measure_links(
    channel: Any, world_rank: int, nodes: tuple[tuple[int, ...], ...], intra: Any, inter: Any, local_rank: int
) -> LinkParams:
    """Collective over the world: see the module docstring. ``intra``/``inter``: the initialized transports (the
    intra one's ranks are the local ranks). The intra link is measured on the first node with two ranks."""
    pair_node = next((j for j, members in enumerate(nodes) if len(members) > 1), None)
    if pair_node is not None and world_rank in nodes[pair_node][:2]:
        leader = local_rank == 0
        link = _link(intra, 1 if leader else 0, leader, 1 << 20)
        if leader:
            channel.set("intra", json.dumps([link.alpha_s, link.beta_s_per_byte]))
    text = None
    if world_rank == 0:
        inter_link = _link(inter, nodes[1][0], True, 4 << 20) if len(nodes) > 1 else Link(0.0, 0.0)
        a, b = torch.rand(1 << 18), torch.rand(1 << 18)
        reps = []
        for _ in range(REPS):
            t0 = time.perf_counter()
            torch.add(a, b, out=a)
            reps.append(time.perf_counter() - t0)
        pairs = [_pair(0, nodes[1][0], inter_link, "inter", 4 << 20)] if len(nodes) > 1 else []
        intra_link = Link(0.0, 0.0)  # no node holds two ranks: nothing moves inside a node
        if pair_node is not None:
            a_rank, b_rank = nodes[pair_node][:2]
            alpha, beta = json.loads(
                channel.get("intra", owner=f"rank {a_rank}", what="publish the intra-node link it measured")
            )
            intra_link = Link(alpha, beta)
            pairs.insert(0, _pair(a_rank, b_rank, intra_link, "intra", 1 << 20))
        text = LinkParams(
            intra_link, inter_link, statistics.median(reps) / (1 << 20), "measured at init", pairs
        ).to_json()
    elif len(nodes) > 1 and world_rank == nodes[1][0]:
        _link(inter, 0, False, 4 << 20)
    raw = channel.broadcast("links", text, 0, world_rank, what="publish the measured link parameters")
    return parse_links(raw.decode(), "measured at init")


def job_links(inter: Any, transports: tuple[str, str], measure: Any) -> LinkParams:
    """Collective: a plugin's answer to ``sagellm_comm_link_parameters`` (cached or measured and cached), else
    ``measure()``."""
    from sagellm_comm.registry import plugin_manager

    found = plugin_manager().call_first(
        "sagellm_comm_link_parameters",
        isolate=False,
        backend=inter,
        transports=transports,
        measure=lambda: measure().to_dict(),
    )
    if found is None:
        return measure()
    plugin, answer = found
    return parse_links(answer, f"plugin {plugin!r}")
