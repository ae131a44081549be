"""Entry point of the Gloo plugin (group ``sagellm_comm.plugins``, name ``gloo``); registers by path, imports nothing
heavy."""

from __future__ import annotations

from sagellm_comm.plugins import hookimpl
from sagellm_comm.registry import BackendRegistry, BackendSpec

# the plugin API this entry module is written for; the core skips it when it speaks another (docs/plugins.md)
SAGELLM_COMM_PLUGIN_API = "2.0"


@hookimpl
def sagellm_comm_register_backends(registry: BackendRegistry) -> None:
    registry.register(
        BackendSpec(
            name="gloo",
            factory="sagellm_comm_gloo.backend:GlooBackend",
            devices=frozenset({"cpu"}),
            priority=10,
            available="sagellm_comm_gloo.probes:gloo_available",
            install_hint="pip install 'isagellm-comm[gloo]' (isagellm-comm-gloo)",
            description="torch.distributed Gloo: CPU tensors over TCP, any number of hosts",
        )
    )
