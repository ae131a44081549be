"""Entry point of the mpshm plugin (group ``sagellm_comm.plugins``, name ``mpshm``); registers by path, imports
nothing heavy."""

from __future__ import annotations

from sagellm_comm.plugins import hookimpl
from sagellm_comm.registry import BackendRegistry, BackendSpec

# the plugin API this entry module is written for (sagellm_comm.plugins.PLUGIN_API_VERSION when it was generated): the
# core registers the plugin only when it speaks the same major and at least this minor, and otherwise lists it as
# "incompatible" in `sagellm-comm info` with what to install
SAGELLM_COMM_PLUGIN_API = "2.0"


@hookimpl
def sagellm_comm_register_backends(registry: BackendRegistry) -> None:
    registry.register(
        BackendSpec(
            name="mpshm",
            factory="sagellm_comm_mpshm.backend:MpshmBackend",
            devices=frozenset({"cpu"}),
            priority=-10,  # an example: `auto` never prefers it to the real backends
            available="sagellm_comm_mpshm.probes:available",
            install_hint="pip install isagellm-comm-mpshm",
            scope="host",  # shared memory: the ranks of one host only
            description="example plugin: all_reduce/broadcast/all_gather/barrier over multiprocessing shared memory",
        )
    )
