"""What an algorithm is, the ops it may implement, and the table of known algorithms.

An algorithm is one way to run a collective on a backend: ``native`` calls the backend's own collective; the
composite ones (``ring``, ``tree``, ``recursive_doubling``) are built here from the backend's point-to-point
``send``/``recv`` (``isend``/``irecv`` where the backend declares async ops), so they run on any backend that can
send and receive.

Every implementation has the signature of its op (group ranks for roots and peers; ``group`` None = the world):

================  ==========================================================================================
all_reduce        ``fn(comm, tensor, op, group)``: reduce ``tensor`` in place on every rank
all_gather        ``fn(comm, output, tensor, group)``: ``output`` holds ``world_size * tensor.numel()`` elements,
                  rank-major
reduce_scatter    ``fn(comm, output, input, op, group)``: ``input`` holds ``world_size * output.numel()``
broadcast         ``fn(comm, tensor, root, group)``
reduce            ``fn(comm, tensor, root, op, group)``: the result is in ``tensor`` on ``root`` only
all_to_all        ``fn(comm, output, input, group)``: chunk ``j`` of ``input`` goes to rank ``j``
sendrecv          ``fn(comm, output, input, group)``: send ``input`` to rank+1, receive rank-1's into ``output``
================  ==========================================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sagellm_comm.errors import BackendNotSupportedError, InvalidArgumentError

__all__ = [
    "AUTO",
    "OPS",
    "Algorithm",
    "algorithm_names",
    "get_algorithm",
    "register_algorithm",
    "resolve_op",
]

AUTO = "auto"
# the collectives the algorithms and the benchmark know, in nccl-tests' order
OPS: tuple[str, ...] = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "reduce", "all_to_all", "sendrecv")
# the backend ops (capability names) composite algorithms are built from
P2P_OPS = frozenset({"send", "recv"})


def resolve_op(name: str) -> str:
    """Canonical op name (``ALL_REDUCE`` -> ``all_reduce``); raises InvalidArgumentError for an unknown op."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in OPS:
        raise InvalidArgumentError(f"unknown op {name!r}; choose from: {', '.join(OPS)}")
    return key


@dataclass(frozen=True)
class Algorithm:
    """One algorithm: its implementation per op, the backend ops it needs, and its cost model per op
    (alpha = latency per message, beta = seconds per byte, gamma = reduce seconds per byte; n bytes, p ranks)."""

    name: str
    description: str
    impls: Mapping[str, Callable[..., Any]]
    cost: Mapping[str, str] = field(default_factory=dict)
    # backend ops it needs for each op (None: the op itself, i.e. the backend's native collective)
    needs: frozenset[str] | None = P2P_OPS

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(op for op in OPS if op in self.impls)

    def supports(self, op: str) -> bool:
        return op in self.impls

    def fn(self, op: str) -> Callable[..., Any]:
        """The implementation for ``op``; InvalidArgumentError if this algorithm has none."""
        impl = self.impls.get(op)
        if impl is None:
            raise InvalidArgumentError(
                f"algorithm {self.name!r} has no {op}; it implements: {', '.join(self.ops)} "
                f"(use --algo native or auto for {op})"
            )
        return impl

    def backend_ops(self, op: str) -> frozenset[str]:
        """The capability names a backend must declare to run ``op`` with this algorithm."""
        if self.needs is not None:
            return self.needs
        if op == "sendrecv":
            return P2P_OPS
        return frozenset({op})

    def check_backend(self, op: str, backend: Any) -> None:
        """Raise BackendNotSupportedError if ``backend`` (a CommBackend class or instance) lacks what this
        algorithm needs for ``op``."""
        missing = sorted(self.backend_ops(op) - set(backend.capabilities.ops))
        if op == "all_gather" and missing == ["all_gather"] and "all_gather_into_tensor" in backend.capabilities.ops:
            missing = []
        if missing:
            raise BackendNotSupportedError(
                f"backend {backend.name!r} cannot run {op} with algorithm {self.name!r}: it does not declare "
                f"{', '.join(missing)}"
            )


_ALGORITHMS: dict[str, Algorithm] = {}
_builtin_loaded = False


def register_algorithm(algo: Algorithm) -> Algorithm:
    """Add (or replace) an algorithm by name."""
    name = algo.name
    if not name or name != name.strip().lower() or name == AUTO:
        raise InvalidArgumentError(f"algorithm name {name!r} must be a non-empty lower-case name, not 'auto'")
    unknown = sorted(set(algo.impls) - set(OPS))
    if unknown:
        raise InvalidArgumentError(f"algorithm {name!r} implements unknown ops {unknown}; known: {', '.join(OPS)}")
    _ALGORITHMS[name] = algo
    return algo


def algorithm_names() -> list[str]:
    _load_builtin()
    return list(_ALGORITHMS)


def get_algorithm(name: str) -> Algorithm:
    """The algorithm called ``name``; InvalidArgumentError naming the known ones otherwise."""
    _load_builtin()
    key = str(name).strip().lower().replace("-", "_")
    algo = _ALGORITHMS.get(key)
    if algo is None:
        raise InvalidArgumentError(f"unknown algorithm {name!r}; choose from: {AUTO}, {', '.join(_ALGORITHMS)}")
    return algo


def _load_builtin() -> None:
    global _builtin_loaded
    if _builtin_loaded:
        return
    _builtin_loaded = True
    from sagellm_comm.algorithms import hierarchical, native, rabenseifner, recursive_doubling, ring, tree

    builtin = {
        m.ALGORITHM.name: m.ALGORITHM for m in (native, ring, tree, recursive_doubling, rabenseifner, hierarchical)
    }
    # a name registered before the first lookup keeps its registration
    _ALGORITHMS.update({name: algo for name, algo in builtin.items() if name not in _ALGORITHMS})
