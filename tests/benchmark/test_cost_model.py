"""The alpha-beta-gamma cost model: the issue's formulas, the hierarchical sum of stages, and choices that depend on
nothing but the inputs (identical on every rank)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagellm_comm.algorithms.cost import MODELLED, Link, Network, choose, predict

A, B, G = 50e-6, 1e-9, 2e-10
FLAT = Network(nodes=1, ranks_per_node=4, intra=Link(A, B), inter=Link(A, B), gamma_s_per_byte=G)


def test_flat_formulas() -> None:
    n, p = 1 << 20, 4
    assert predict("ring", n, FLAT) == pytest.approx(2 * (p - 1) * A + 2 * (p - 1) / p * n * B + (p - 1) / p * n * G)
    assert predict("native", n, FLAT) == predict("ring", n, FLAT)
    assert predict("recursive_doubling", n, FLAT) == pytest.approx(2 * (A + n * B + n * G))
    assert predict("rabenseifner", n, FLAT) == pytest.approx(2 * 2 * A + 2 * 3 / 4 * n * B + 3 / 4 * n * G)
    five = Network(1, 5, Link(A, B), Link(A, B), G)  # not a power of two: the pre/post step on top of 4 ranks
    assert predict("rabenseifner", n, five) == pytest.approx(predict("rabenseifner", n, FLAT) + 2 * (A + n * B) + n * G)
    assert predict("ring", n, Network(1, 1, Link(A, B), Link(A, B))) == 0.0


def test_hierarchical_is_the_sum_of_its_stages_and_flat_pays_the_slow_link() -> None:
    intra, inter = Link(10e-6, 0.2e-9), Link(100e-6, 8e-9)
    net = Network(nodes=2, ranks_per_node=2, intra=intra, inter=inter, gamma_s_per_byte=G)
    n = 16 << 20
    in_node = intra.alpha_s + n / 2 * intra.beta_s_per_byte
    across = 2 * inter.alpha_s + 2 * (1 / 2) * (n / 2) * (2 * inter.beta_s_per_byte) + (1 / 2) * (n / 2) * G
    assert predict("hierarchical", n, net) == pytest.approx(in_node + n / 2 * G + across + in_node)
    assert predict("ring", n, net) == pytest.approx(
        2 * 3 * inter.alpha_s + 1.5 * n * inter.beta_s_per_byte + 0.75 * n * G
    )
    algo, reason = choose(n, net)
    assert algo == "hierarchical"
    assert reason.startswith("hierarchical: 2 node(s) x 2 rank(s), inter-node beta 40.0x intra; predicted ")
    assert " vs " in reason
    assert choose(64, net)[0] != "hierarchical"  # tiny messages: fewer steps win


@given(
    nbytes=st.integers(1, 1 << 30),
    nodes=st.integers(1, 8),
    local=st.integers(1, 8),
    alphas=st.tuples(st.floats(0, 1e-3), st.floats(0, 1e-3)),
    betas=st.tuples(st.floats(0, 1e-8), st.floats(0, 1e-7)),
)
def test_choice_depends_only_on_the_inputs(nbytes: int, nodes: int, local: int, alphas: tuple, betas: tuple) -> None:
    net = Network(nodes, local, Link(alphas[0], betas[0]), Link(alphas[1], betas[1]), G)
    first = choose(nbytes, net)
    assert choose(nbytes, Network(nodes, local, Link(alphas[0], betas[0]), Link(alphas[1], betas[1]), G)) == first
    assert first[0] in MODELLED
    assert all(math.isfinite(predict(a, nbytes, net)) and predict(a, nbytes, net) >= 0 for a in MODELLED)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="no cost model"):
        predict("tree", 1, FLAT)
    with pytest.raises(ValueError, match=">= 0"):
        Link(-1.0, 0.0)


def test_other_ops_two_level_against_flat() -> None:
    """all_gather/reduce_scatter/broadcast: the two-level forms pay the slow link once per block."""
    from sagellm_comm.algorithms.cost import predict_op

    net = Network(nodes=2, ranks_per_node=2, intra=Link(10e-6, 0.2e-9), inter=Link(100e-6, 8e-9), gamma_s_per_byte=G)
    n = 4 << 20
    for op in ("all_gather", "reduce_scatter", "broadcast"):
        assert predict_op(op, "hierarchical", n, net) < predict_op(op, "flat", n, net), op
    assert predict_op("all_gather", "flat", n, net) == pytest.approx(3 * 100e-6 + 0.75 * 4 * n * 8e-9)
    assert predict_op("broadcast", "flat", n, net) == pytest.approx(2 * (100e-6 + n * 8e-9))
    assert choose(n, net, ("flat", "hierarchical"), op="all_gather")[0] == "hierarchical"
    with pytest.raises(ValueError, match="no cost model for op"):
        predict_op("gather", "flat", n, net)


def test_job_network_reads_only_the_launchers_environment() -> None:
    from sagellm_comm.algorithms.cost import DEFAULT_LINKS, job_network

    assert job_network(4, {}) == (None, None)
    assert job_network(4, {"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "2"}) == (None, None)  # another world
    nodes, net = job_network(4, {"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"})
    assert nodes == 2 and net.ranks_per_node == 2 and net.inter.alpha_s == DEFAULT_LINKS["inter"][0]
    assert "defaults" in net.source
    nodes, net = job_network(
        6,
        {
            "WORLD_SIZE": "6",
            "LOCAL_WORLD_SIZE": "2",
            "SAGELLM_COMM_HIER_LINKS": '{"intra": [1e-5, 1e-10], "inter": [1e-4, 1e-8]}',
        },
    )
    assert nodes == 3 and net.inter.beta_s_per_byte == 1e-8 and net.source == "SAGELLM_COMM_HIER_LINKS"
    with pytest.raises(ValueError, match="link parameters must be"):
        job_network(4, {"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "SAGELLM_COMM_HIER_LINKS": "[1, 2]"})
