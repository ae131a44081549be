"""Entry point of the Gloo plugin (group ``sagellm_comm.plugins``, name ``gloo``)."""

from __future__ import annotations

from sagellm_comm.plugins import hookimpl
from sagellm_comm.registry import BackendRegistry, BackendSpec
from sagellm_comm_gloo.backend import GlooBackend, gloo_available


@hookimpl
def sagellm_comm_register_backends(registry: BackendRegistry) -> None:
    registry.register(BackendSpec(
        name="gloo", factory=GlooBackend, devices=frozenset({"cpu"}), priority=10, available=gloo_available,
        description="torch.distributed Gloo: CPU tensors over TCP, any number of hosts",
    ))
