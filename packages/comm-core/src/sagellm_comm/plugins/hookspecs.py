"""pluggy hook specifications: how a plugin extends sagellm-comm.

A plugin is a module (or object) registered through the ``sagellm_comm.plugins`` entry-point group that
implements some of these hooks with ``@sagellm_comm.plugins.hookimpl``. Hooks are only ever added, never changed.
The core calls them through pluggy only (``SagellmPluginManager.call_plugin`` / ``call_each`` / ``call_first``), so
an implementation may declare fewer arguments than a spec offers; "first wins" specs are ``firstresult``.
docs/plugins.md documents every hook: when it is called, its arguments, what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from sagellm_protocol import CommTopologyDescriptor

    from sagellm_comm.backend import CommBackend
    from sagellm_comm.registry import BackendRegistry
    from sagellm_comm.topology import Topology

PROJECT = "sagellm_comm"
"""The pluggy project name the markers and the plugin manager share."""
hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks a hook specification (the functions of this module)."""
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's hook implementation: ``@hookimpl`` over a function named after the hook it implements."""


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


@hookspec(firstresult=True)
def sagellm_comm_topology_gather(topology: Topology, backend: CommBackend, group: Any) -> dict[str, Any] | None:
    """Collective: build the multi-rank view for ``Topology.discover(backend=..., group=...)``, which every rank of
    ``group`` (None: the world) calls. Exchange this host's facts through ``backend`` and return the whole map
    (JSON-serialisable; stored under the plugin's name in ``topology.facts``); set ``topology.num_nodes``.
    The first plugin returning non-None wins; an error propagates (a collective must not fail silently)."""


@hookspec(firstresult=True)
def sagellm_comm_topology_descriptor(topology: Topology, backend: str | None) -> CommTopologyDescriptor | None:
    """The protocol descriptor for ``topology.to_descriptor(backend)`` from the plugin's richer model (bandwidths,
    topology type); the core adds its own metadata. The first non-None wins; an error falls back to the core's."""


@hookspec(firstresult=True)
def sagellm_comm_topology_tree(topology: Topology) -> Any:
    """A rich renderable (e.g. ``rich.tree.Tree``) showing ``topology`` for ``sagellm-comm topology``; first wins."""


@hookspec(firstresult=True)
def sagellm_comm_topology_render(topology: Topology, path: str) -> str | None:
    """Draw ``topology`` into an image file (format from the suffix: .png, .svg); return the path written."""


@hookspec(firstresult=True)
def sagellm_comm_topology_profile(
    topology: Topology, backend: str | None, world_size: int, budget_s: float
) -> dict[str, Any] | None:
    """Measure link latency and bandwidth on ``world_size`` local ranks through ``backend`` (None: auto), add the
    results to ``topology`` and return the profile; for ``sagellm-comm topology --profile``."""


@hookspec(firstresult=True)
def sagellm_comm_link_parameters(
    backend: CommBackend, transports: tuple[str, str], measure: Callable[[], dict[str, Any]]
) -> dict[str, Any] | None:
    """Collective over ``backend``'s world (the hier composite calls it on every rank at init, ``backend`` being its
    inter-node transport): the link parameters of this job, whose ranks talk through ``transports`` (intra, inter
    backend names), as ``{"intra": [alpha_s, beta_s_per_byte], "inter": [...], "gamma": s_per_byte, "source": str,
    "pairs": [...]}``, the same dict on every rank. A plugin that caches link profiles returns the cached ones, or
    calls ``measure()`` (collective too; it returns that dict) and caches what it returns. None: no opinion (the
    composite measures). First wins; errors propagate (a collective must not fail silently)."""
