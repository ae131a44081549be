"""Collective algorithms and how one is chosen.

``native`` is the backend's own collective; ``ring``, ``tree``, ``recursive_doubling`` and ``rabenseifner`` are
composite algorithms over any backend's point-to-point send/recv (cost models in each module and in docs/benchmark.md).
``select`` picks one per call: explicit name, else selector config rules, else the
``sagellm_comm_select_algorithm`` plugin hook, else ``native``.
"""

from sagellm_comm.algorithms.base import (
    AUTO,
    OPS,
    Algorithm,
    algorithm_names,
    get_algorithm,
    register_algorithm,
    resolve_op,
)
from sagellm_comm.algorithms.selector import (
    DEFAULT_ALGORITHM,
    Selection,
    SelectorConfig,
    SelectorRule,
    load_selector_config,
    select,
)

__all__ = [
    "AUTO",
    "DEFAULT_ALGORITHM",
    "OPS",
    "Algorithm",
    "Selection",
    "SelectorConfig",
    "SelectorRule",
    "algorithm_names",
    "get_algorithm",
    "load_selector_config",
    "register_algorithm",
    "resolve_op",
    "select",
]
