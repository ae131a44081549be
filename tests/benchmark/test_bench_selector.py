"""Algorithm selection: explicit names, the selector config (schema and errors), the plugin hook, the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from sagellm_comm import InvalidArgumentError
from sagellm_comm.algorithms import SelectorConfig, get_algorithm, load_selector_config, select
from sagellm_comm.plugins import hookimpl
from sagellm_comm.registry import register_plugin, reload_plugins

ROOT = Path(__file__).resolve().parents[2]

RULES = {
    "version": 1,
    "rules": [
        {"id": "small", "op": "all_reduce", "max_bytes": "2K", "algo": "recursive_doubling"},
        {
            "id": "big-gloo-4",
            "op": ["all_reduce", "all_gather"],
            "min_bytes": 1 << 20,
            "world_sizes": [4],
            "backend": "gloo",
            "algo": "ring",
            "description": "bandwidth bound",
        },
        {"id": "bcast", "op": "broadcast", "algo": "tree"},
    ],
}


def test_explicit_algorithm_wins_and_is_checked_against_the_op() -> None:
    sel = select("all_reduce", 64, 4, "gloo", "tree", SelectorConfig.from_dict(RULES))
    assert (sel.algo, sel.rule_id) == ("tree", "explicit")
    with pytest.raises(InvalidArgumentError, match="algorithm 'tree' has no all_gather"):
        select("all_gather", 64, 4, "gloo", "tree")
    with pytest.raises(InvalidArgumentError, match="unknown algorithm 'nope'"):
        select("all_reduce", 64, 4, "gloo", "nope")


@pytest.mark.parametrize(
    ("op", "nbytes", "ws", "backend", "algo", "rule"),
    [
        ("all_reduce", 2048, 2, "gloo", "recursive_doubling", "small"),  # max_bytes is inclusive
        ("all_reduce", 2049, 4, "gloo", "native", "default"),
        ("all_reduce", 1 << 20, 4, "gloo", "ring", "big-gloo-4"),  # min_bytes is inclusive
        ("all_gather", 4 << 20, 4, "gloo", "ring", "big-gloo-4"),
        ("all_gather", 4 << 20, 2, "gloo", "native", "default"),  # world size not listed
        ("all_gather", 4 << 20, 4, "shm", "native", "default"),  # backend not listed
        ("broadcast", 1, 3, "shm", "tree", "bcast"),
    ],
)
def test_config_rules_first_match(op: str, nbytes: int, ws: int, backend: str, algo: str, rule: str) -> None:
    sel = select(op, nbytes, ws, backend, "auto", SelectorConfig.from_dict(RULES, source="rules.json"))
    assert (sel.algo, sel.rule_id) == (algo, rule)
    if rule != "default":
        assert f"rule {rule!r}" in sel.reason and "rules.json" in sel.reason
    else:
        assert "the backend's own collective" in sel.reason


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ([], "top level must be a JSON object"),
        ({"rules": {}}, "'rules' must be a list"),
        ({"rules": [], "extra": 1}, r"unknown key\(s\) \['extra'\]"),
        ({"version": 2, "rules": []}, "version 2"),
        ({"rules": [{"op": "all_reduce", "algo": "ring"}]}, r"rules\[0\]: missing required key 'id'"),
        ({"rules": [{"id": "a", "op": "all_reduce", "algo": "ring", "bytes": 1}]}, r"unknown key\(s\) \['bytes'\]"),
        ({"rules": [{"id": "a", "op": "frob", "algo": "ring"}]}, "unknown op 'frob'"),
        ({"rules": [{"id": "a", "op": "all_reduce", "algo": "nope"}]}, "unknown algorithm 'nope'"),
        ({"rules": [{"id": "a", "op": "all_reduce", "algo": "auto"}]}, "not auto"),
        ({"rules": [{"id": "a", "op": "broadcast", "algo": "ring"}]}, "algorithm 'ring' has no broadcast"),
        ({"rules": [{"id": "a", "op": "all_reduce", "algo": "ring", "min_bytes": "4X"}]}, "invalid size '4X'"),
        (
            {"rules": [{"id": "a", "op": "all_reduce", "algo": "ring", "min_bytes": "1M", "max_bytes": "4K"}]},
            "below min_bytes",
        ),
        ({"rules": [{"id": "a", "op": "all_reduce", "algo": "ring", "world_sizes": [0]}]}, "world_sizes"),
        ({"rules": [{"id": "a", "op": "all_reduce", "algo": "ring", "backend": []}]}, "'backend'"),
        (
            {
                "rules": [
                    {"id": "a", "op": "all_reduce", "algo": "ring"},
                    {"id": "a", "op": "all_gather", "algo": "ring"},
                ]
            },
            "already used by",
        ),
    ],
)
def test_config_errors_are_one_clear_line(doc: object, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match) as info:
        SelectorConfig.from_dict(doc, source="bad.json")
    assert "\n" not in info.value.message


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="cannot read selector config"):
        load_selector_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidArgumentError, match="is not valid JSON"):
        load_selector_config(bad)


def test_shipped_example_policy_is_valid() -> None:
    cfg = load_selector_config(ROOT / "benchmark" / "selector_policy.json")
    assert [r.id for r in cfg.rules] == ["ar-small-rd", "ar-large-ring", "bcast-reduce-tree"]
    for rule in cfg.rules:
        for op in rule.ops:
            get_algorithm(rule.algo).fn(op)


class _ChoosesRing:
    @hookimpl
    def sagellm_comm_select_algorithm(self, op: str, nbytes: int, world_size: int, backend: str) -> str | None:
        return "ring" if op == "all_reduce" and nbytes >= 4096 else None


class _ChoosesNonsense:
    @hookimpl
    def sagellm_comm_select_algorithm(self, op: str, nbytes: int, world_size: int, backend: str) -> str | None:
        return "tree" if op == "all_gather" else None


@pytest.fixture
def selector_plugins():
    reload_plugins()
    register_plugin(_ChoosesRing(), "chooses-ring")
    register_plugin(_ChoosesNonsense(), "chooses-nonsense")
    yield
    reload_plugins()


def test_plugin_hook_after_config_before_default(selector_plugins) -> None:
    cfg = SelectorConfig.from_dict(RULES)
    assert select("all_reduce", 1024, 2, "gloo", "auto", cfg).rule_id == "small"  # the config first
    sel = select("all_reduce", 8192, 2, "gloo", "auto", cfg)
    assert (sel.algo, sel.rule_id) == ("ring", "hook:chooses-ring")
    assert "sagellm_comm_select_algorithm" in sel.reason
    assert select("all_reduce", 100, 2, "gloo", "auto").rule_id == "default"  # the plugin answered None
    with pytest.warns(UserWarning, match="chooses-nonsense"):
        sel = select("all_gather", 100, 2, "gloo", "auto")
    assert sel.algo == "native" and "'tree', which has no all_gather" in sel.reason


POLICY_WITH_LINES = """{
  "rules": [
    {"id": "small", "op": "all_reduce", "max_bytes": "4K", "algo": "recursive_doubling"},

    {"id": "big", "op": ["all_reduce"],
     "min_bytes": "%s", "algo": "%s"},
    {"id": "any-ws2", "op": "all_reduce", "algo": "native", "world_sizes": [2]}
  ]
}"""


@pytest.mark.parametrize(
    "min_bytes, algo, match",
    [
        (
            "2K",
            "ring",
            r"rules\[1\] \(line 5\) \(id 'big'\) overlaps rules\[0\] \(line 3\) \(id 'small'\): both cover "
            r"all_reduce at 2048\.\.4096 bytes",
        ),
        ("8K", "rings", r"rules\[1\] \(line 5\) \(id 'big'\): unknown algorithm 'rings'"),
        ("8K", 'tree", "op": "all_gather', r"rules\[1\] \(line 5\)"),
    ],
)
def test_policy_errors_name_the_rule_and_its_line(tmp_path: Path, min_bytes: str, algo: str, match: str) -> None:
    path = tmp_path / "policy.json"
    path.write_text(POLICY_WITH_LINES % (min_bytes, algo))
    with pytest.raises(InvalidArgumentError, match=match):
        load_selector_config(path)


def test_disjoint_ranges_and_a_narrower_scope_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(POLICY_WITH_LINES % ("8K", "rabenseifner"))
    cfg = load_selector_config(path)
    assert select("all_reduce", 1 << 20, 4, "gloo", config=cfg).algo == "rabenseifner"
    assert select("all_reduce", 5000, 2, "gloo", config=cfg).rule_id == "any-ws2"


def test_bad_json_says_where(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text((POLICY_WITH_LINES % ("8K", "ring")).replace('"ring"}', '"ring",}'))
    with pytest.raises(InvalidArgumentError, match=r"not valid JSON: .* at line 6, column"):
        load_selector_config(path)


def test_nodes_in_rules_and_the_cost_model_step() -> None:
    """A rule may name node counts (it matches only when the count is known); with ranks on several nodes and no
    rule or plugin answering, the cost model picks, with its reason and the links' source; the same inputs give the
    same choice (what keeps ranks from deadlocking)."""
    from sagellm_comm.algorithms.cost import Link, Network

    cfg = SelectorConfig.from_dict(
        {"rules": [{"id": "two-nodes", "op": "all_reduce", "min_bytes": "1M", "nodes": [2], "algo": "hierarchical"}]}
    )
    assert select("all_reduce", 4 << 20, 4, "gloo", "auto", cfg, nodes=2).rule_id == "two-nodes"
    assert select("all_reduce", 4 << 20, 4, "gloo", "auto", cfg, nodes=1).rule_id == "default"
    assert select("all_reduce", 4 << 20, 4, "gloo", "auto", cfg).rule_id == "default"  # node count unknown
    net = Network(2, 2, Link(10e-6, 0.2e-9), Link(100e-6, 8e-9), 2e-10, source="test links")
    picks = [
        select("all_reduce", n, 4, "gloo", "auto", None, nodes=2, network=net, use_plugins=False)
        for n in (4 << 10, 64 << 20)
    ]
    assert [p.rule_id for p in picks] == ["cost-model", "cost-model"]
    assert picks[1].algo == "hierarchical" and "predicted" in picks[1].reason and "test links" in picks[1].reason
    assert picks == [
        select("all_reduce", n, 4, "gloo", "auto", None, nodes=2, network=net, use_plugins=False)
        for n in (4 << 10, 64 << 20)
    ]
    one_node = Network(1, 4, Link(10e-6, 0.2e-9), Link(10e-6, 0.2e-9))
    assert select("all_reduce", 1 << 20, 4, "shm", "auto", None, nodes=1, network=one_node).rule_id == "default"
    with pytest.raises(InvalidArgumentError, match=r"'nodes' must be a non-empty list of ints >= 1"):
        SelectorConfig.from_dict({"rules": [{"id": "x", "op": "all_reduce", "nodes": [0], "algo": "ring"}]})
