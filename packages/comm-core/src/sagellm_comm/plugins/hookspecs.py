"""pluggy hook specifications: how a plugin extends sagellm-comm.

A plugin is a module (or object) registered through the ``sagellm_comm.plugins`` entry-point group that
implements some of these hooks with ``@sagellm_comm.plugins.hookimpl``. Hooks are only ever added, never changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from sagellm_comm.registry import BackendRegistry
    from sagellm_comm.topology import Topology

PROJECT = "sagellm_comm"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def sagellm_comm_register_backends(registry: BackendRegistry) -> None:
    """Register the plugin's backends: ``registry.register(BackendSpec(name=..., factory=..., ...))``."""


@hookspec
def sagellm_comm_topology_facts(topology: Topology) -> dict[str, Any] | None:
    """Contribute facts about this host (devices, links, NICs) to ``Topology.discover()``.

    Return a JSON-serialisable dict; it is stored under the plugin's name in ``topology.facts``. Plugins may also
    append ``Device`` entries to ``topology.devices``.
    """


@hookspec(firstresult=True)
def sagellm_comm_select_algorithm(op: str, nbytes: int, world_size: int, backend: str) -> str | None:
    """Pick an algorithm id (e.g. ``"ring"``, ``"tree"``) for one collective call; the first non-None wins."""
