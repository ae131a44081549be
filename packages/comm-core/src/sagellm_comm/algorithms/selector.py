"""Which algorithm runs a collective: an explicit choice, else a selector config, else plugins, else ``native``.

Order for ``algo="auto"``:

1. the first rule of the selector config (``--selector-config FILE``) that matches the call;
2. the first plugin whose ``sagellm_comm_select_algorithm(op, nbytes, world_size, backend)`` hook returns an
   algorithm id (an unknown id, or one without that op, is skipped with a warning and the reason is recorded);
3. ranks on several nodes (``network`` given, N > 1) and an op the cost model covers: the algorithm it predicts
   fastest (:mod:`sagellm_comm.algorithms.cost`), rule ``cost-model``;
4. ``native``, the backend's own collective.

Every decision comes back as a :class:`Selection` with the rule id and a sentence saying why, which the
benchmark records as ``selection_rule_id`` and ``selection_reason``.

Selector config (JSON)::

    {
      "version": 1,                                  # optional; 1 is the only version
      "description": "small all_reduce by doubling",  # optional
      "rules": [                                     # tried in order, the first match wins
        {"id": "ar-small", "op": "all_reduce", "max_bytes": "2K", "algo": "recursive_doubling"},
        {"id": "ar-large", "op": ["all_reduce"], "min_bytes": "1M", "world_sizes": [2, 4],
         "backend": "gloo", "nodes": [2, 4], "algo": "ring", "description": "optional note"}
      ]
    }

``id`` (unique), ``op`` (a name or a list) and ``algo`` are required; ``min_bytes``/``max_bytes`` are inclusive
(bytes, or sizes such as ``"4K"``; omitted = unbounded); ``world_sizes``, ``nodes`` (how many nodes the ranks are
on) and ``backend`` (a name or a list) omitted = any; a rule with ``nodes`` matches only when the node count is
known. The algorithm must implement every op of its rule. Unknown keys are errors. Two rules with the same scope
(an op in common, the same world sizes, node counts and backends) must not have overlapping size ranges: which one
wins would depend on their order, so that is refused, naming both. A broader rule after narrower ones (a catch-all) is
fine. Errors name the rule by index, id and line in the file.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagellm_comm.algorithms.base import AUTO, get_algorithm, resolve_op
from sagellm_comm.errors import CommError, InvalidArgumentError

__all__ = ["DEFAULT_ALGORITHM", "Selection", "SelectorConfig", "SelectorRule", "load_selector_config", "select"]

DEFAULT_ALGORITHM = "native"
HOOK = "sagellm_comm_select_algorithm"
_RULE_KEYS = frozenset({"id", "op", "algo", "min_bytes", "max_bytes", "world_sizes", "nodes", "backend", "description"})
COST_MODELLED = ("native", "ring", "rabenseifner", "recursive_doubling", "hierarchical")
_TOP_KEYS = frozenset({"version", "description", "rules"})


@dataclass(frozen=True)
class Selection:
    algo: str
    rule_id: str
    reason: str


@dataclass(frozen=True)
class SelectorRule:
    id: str
    ops: tuple[str, ...]
    algo: str
    min_bytes: int = 0
    max_bytes: int | None = None
    world_sizes: tuple[int, ...] | None = None
    backends: tuple[str, ...] | None = None
    description: str = ""
    nodes: tuple[int, ...] | None = None

    def matches(self, op: str, nbytes: int, world_size: int, backend: str, nodes: int | None = None) -> bool:
        return (
            op in self.ops
            and nbytes >= self.min_bytes
            and (self.max_bytes is None or nbytes <= self.max_bytes)
            and (self.world_sizes is None or world_size in self.world_sizes)
            and (self.nodes is None or nodes in self.nodes)
            and (self.backends is None or backend in self.backends)
        )

    def describe(self) -> str:
        parts = [f"op {'/'.join(self.ops)}"]
        if self.min_bytes or self.max_bytes is not None:
            hi = "inf" if self.max_bytes is None else str(self.max_bytes)
            parts.append(f"{self.min_bytes}..{hi} B")
        if self.world_sizes is not None:
            parts.append(f"world sizes {list(self.world_sizes)}")
        if self.nodes is not None:
            parts.append(f"nodes {list(self.nodes)}")
        if self.backends is not None:
            parts.append(f"backend {'/'.join(self.backends)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class SelectorConfig:
    rules: tuple[SelectorRule, ...]
    source: str = "<memory>"
    description: str = ""

    def match(
        self, op: str, nbytes: int, world_size: int, backend: str, nodes: int | None = None
    ) -> SelectorRule | None:
        return next((rule for rule in self.rules if rule.matches(op, nbytes, world_size, backend, nodes)), None)

    @classmethod
    def from_dict(cls, doc: Any, source: str = "<memory>", lines: list[int] | None = None) -> SelectorConfig:
        """Validate ``doc``; ``lines[i]`` (when known) is the line of rule i in the file, for messages."""
        where = f"selector config {source}"
        if not isinstance(doc, dict):
            raise InvalidArgumentError(f"{where}: the top level must be a JSON object with a 'rules' list")
        unknown = sorted(set(doc) - _TOP_KEYS)
        if unknown:
            raise InvalidArgumentError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
        if doc.get("version", 1) != 1:
            raise InvalidArgumentError(f"{where}: version {doc['version']!r} is not supported (use 1)")
        rules = doc.get("rules")
        if not isinstance(rules, list):
            raise InvalidArgumentError(f"{where}: 'rules' must be a list of rule objects")

        def at(i: int) -> str:
            return f"rules[{i}]" + (f" (line {lines[i]})" if lines is not None and i < len(lines) else "")

        parsed = tuple(_parse_rule(raw, f"{where}: {at(i)}") for i, raw in enumerate(rules))
        seen: dict[str, int] = {}
        for i, rule in enumerate(parsed):
            if rule.id in seen:
                raise InvalidArgumentError(
                    f"{where}: {at(i)}: rule id {rule.id!r} already used by {at(seen[rule.id])}; ids must be unique"
                )
            seen[rule.id] = i
        for i, later in enumerate(parsed):
            for j, earlier in enumerate(parsed[:i]):
                if _ambiguous(earlier, later):
                    common = "/".join(op for op in earlier.ops if op in later.ops)
                    raise InvalidArgumentError(
                        f"{where}: {at(i)} (id {later.id!r}) overlaps {at(j)} (id {earlier.id!r}): both cover {common} "
                        f"at {_overlap(earlier, later)} for the same world sizes, nodes and backends, so their order "
                        "would "
                        "decide; make the size ranges disjoint"
                    )
        return cls(rules=parsed, source=source, description=str(doc.get("description", "")))


def _ambiguous(a: SelectorRule, b: SelectorRule) -> bool:
    """Same scope (an op in common, equal world sizes and backends) and overlapping size ranges."""
    if not set(a.ops) & set(b.ops) or a.world_sizes != b.world_sizes or a.backends != b.backends or a.nodes != b.nodes:
        return False
    a_hi = float("inf") if a.max_bytes is None else a.max_bytes
    b_hi = float("inf") if b.max_bytes is None else b.max_bytes
    return max(a.min_bytes, b.min_bytes) <= min(a_hi, b_hi)


def _overlap(a: SelectorRule, b: SelectorRule) -> str:
    lo = max(a.min_bytes, b.min_bytes)
    his = [h for h in (a.max_bytes, b.max_bytes) if h is not None]
    return f"{lo}..{min(his) if his else 'inf'} bytes"


def rule_lines(text: str) -> list[int]:
    """The line where each element of the top-level ``rules`` list starts (empty if it cannot be located)."""
    decoder = json.JSONDecoder()
    try:
        top, _ = decoder.raw_decode(text, len(text) - len(text.lstrip()))
    except json.JSONDecodeError:
        return []
    if not isinstance(top, dict) or not isinstance(top.get("rules"), list):
        return []
    start = text.find('"rules"')
    start = text.find("[", start) if start >= 0 else -1
    if start < 0:
        return []
    lines, i = [], start + 1
    for _ in top["rules"]:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        try:
            _, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return []
        lines.append(text.count("\n", 0, i) + 1)
        i = end
    return lines


def _names(value: Any, where: str, what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise InvalidArgumentError(f"{where}: '{what}' must be a name or a non-empty list of names, got {value!r}")
    return tuple(v.strip().lower() for v in items)


def _bytes(value: Any, where: str, what: str) -> int:
    from sagellm_comm.benchmark.metrics import parse_size

    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return 0
    try:
        return parse_size(value)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(f"{where}: '{what}': {exc}") from None


def _parse_rule(raw: Any, where: str) -> SelectorRule:
    if not isinstance(raw, dict):
        raise InvalidArgumentError(f"{where}: each rule must be an object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise InvalidArgumentError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_RULE_KEYS)}")
    for key in ("id", "op", "algo"):
        if key not in raw:
            raise InvalidArgumentError(f"{where}: missing required key '{key}'")
    rule_id = raw["id"]
    if not isinstance(rule_id, str) or not rule_id.strip():
        raise InvalidArgumentError(f"{where}: 'id' must be a non-empty string, got {rule_id!r}")
    where = f"{where} (id {rule_id!r})"
    try:
        ops = tuple(resolve_op(op) for op in _names(raw["op"], where, "op"))
        if not isinstance(raw["algo"], str) or raw["algo"].strip().lower() == AUTO:
            raise InvalidArgumentError(f"'algo' must name an algorithm (not auto), got {raw['algo']!r}")
        algo = get_algorithm(raw["algo"])
        for op in ops:
            algo.fn(op)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{where}: {exc.message}") from None
    lo = _bytes(raw.get("min_bytes", 0), where, "min_bytes")
    hi = None if raw.get("max_bytes") is None else _bytes(raw["max_bytes"], where, "max_bytes")
    if hi is not None and hi < lo:
        raise InvalidArgumentError(f"{where}: max_bytes {hi} is below min_bytes {lo}")
    world_sizes, nodes = (_counts(raw.get(key), where, key) for key in ("world_sizes", "nodes"))
    backends = None if raw.get("backend") is None else _names(raw["backend"], where, "backend")
    return SelectorRule(
        id=rule_id.strip(),
        ops=ops,
        algo=algo.name,
        min_bytes=lo,
        max_bytes=hi,
        world_sizes=world_sizes,
        backends=backends,
        description=str(raw.get("description", "")),
        nodes=nodes,
    )


def _counts(value: Any, where: str, what: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in value)
    ):
        raise InvalidArgumentError(f"{where}: '{what}' must be a non-empty list of ints >= 1, got {value!r}")
    return tuple(value)


def load_selector_config(path: str | Path) -> SelectorConfig:
    """Read and validate a selector config file; InvalidArgumentError (one line) on any problem."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read selector config {str(p)!r}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(
            f"selector config {str(p)!r} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    return SelectorConfig.from_dict(doc, source=str(p), lines=rule_lines(text))


def _from_plugins(op: str, nbytes: int, world_size: int, backend: str) -> tuple[Selection | None, list[str]]:
    """The first plugin answer that names a usable algorithm, and notes about answers that were skipped."""
    from sagellm_comm.registry import plugin_manager

    notes: list[str] = []
    for plugin, answer, error in plugin_manager().call_each(
        HOOK, op=op, nbytes=nbytes, world_size=world_size, backend=backend
    ):
        if error is not None:
            notes.append(f"plugin {plugin!r} raised {type(error).__name__}")
            continue
        if answer is None:
            continue
        try:
            algo = get_algorithm(str(answer))
            algo.fn(op)
        except CommError as exc:
            warnings.warn(
                f"sagellm-comm plugin {plugin!r} chose an algorithm that cannot run here: {exc.message}", stacklevel=3
            )
            notes.append(f"plugin {plugin!r} chose {answer!r}, which has no {op}")
            continue
        return Selection(algo.name, f"hook:{plugin}", f"plugin {plugin!r} chose {algo.name} through {HOOK}"), notes
    return None, notes


def select(
    op: str,
    nbytes: int,
    world_size: int,
    backend: str,
    algo: str = AUTO,
    config: SelectorConfig | None = None,
    *,
    use_plugins: bool = True,
    nodes: int | None = None,
    network: Any = None,
) -> Selection:
    """The algorithm for one call, with the rule that chose it and why. ``nodes``: how many nodes the ranks are on
    (policy rules may name it); ``network``: a :class:`~sagellm_comm.algorithms.cost.Network` for the cost-model
    step (its inputs must be the same on every rank, or ranks choose differently and deadlock)."""
    op = resolve_op(op)
    name = str(algo).strip().lower()
    if name != AUTO:
        chosen = get_algorithm(name)
        chosen.fn(op)  # an algorithm without this op is an error, never a silent fallback
        return Selection(chosen.name, "explicit", f"algorithm {chosen.name} requested explicitly")
    if config is not None:
        rule = config.match(op, nbytes, world_size, backend, nodes)
        if rule is not None:
            why = rule.description or rule.describe()
            return Selection(rule.algo, rule.id, f"selector config {config.source}: rule {rule.id!r} ({why})")
    notes: list[str] = []
    if use_plugins:
        found, notes = _from_plugins(op, nbytes, world_size, backend)
        if found is not None:
            return found
    if network is not None and network.nodes > 1 and op == "all_reduce":
        from sagellm_comm.algorithms.cost import choose

        best, why = choose(nbytes, network, COST_MODELLED)
        return Selection(best, "cost-model", f"{why} (links: {network.source})")
    skipped = f"; {'; '.join(notes)}" if notes else ""
    rules = "no selector rule matched" if config is not None else "no selector config"
    reason = f"{rules} and no plugin chose: the backend's own collective{skipped}"
    return Selection(DEFAULT_ALGORITHM, "default", reason)
