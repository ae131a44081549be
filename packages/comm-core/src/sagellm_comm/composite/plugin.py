"""Entry point of the composite (group ``sagellm_comm.plugins``, name ``hier``): registers by path, imports nothing."""

from __future__ import annotations

from sagellm_comm.plugins import hookimpl
from sagellm_comm.registry import BackendRegistry, BackendSpec

# the plugin API this entry module is written for; the core skips it when it speaks another (docs/plugins.md)
SAGELLM_COMM_PLUGIN_API = "2.0"


@hookimpl
def sagellm_comm_register_backends(registry: BackendRegistry) -> None:
    registry.register(
        BackendSpec(
            name="hier",
            factory="sagellm_comm.composite.backend:HierBackend",
            devices=frozenset({"cpu"}),
            priority=30,
            available="sagellm_comm.composite.transports:transports_available",
            scope="composite",
            auto_when="sagellm_comm.composite.transports:spans_hosts",
            description="composite for ranks on several hosts: node-local transport inside each host (shm), a "
            "cross-host one between them (gloo), two-level collectives where the cost model says so",
        )
    )
