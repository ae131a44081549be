"""Entry point of the memory-semantic plugin (group ``sagellm_comm.plugins``, name ``cxl-ub``).

Import-light: backends are registered by path, so listing them imports only ``probes`` (no torch, numpy or engine);
the engine is imported when a backend is created.
"""

from __future__ import annotations

from sagellm_comm.plugins import hookimpl
from sagellm_comm.registry import BackendRegistry, BackendSpec

# the plugin API this entry module is written for; the core skips it when it speaks another (docs/plugins.md)
SAGELLM_COMM_PLUGIN_API = "2.0"

HINT = "pip install 'isagellm-comm[cxl-ub]' (isagellm-comm-cxl-ub)"


@hookimpl
def sagellm_comm_register_backends(registry: BackendRegistry) -> None:
    cpu = frozenset({"cpu"})
    registry.register(
        BackendSpec(
            name="shm",
            factory="sagellm_comm_cxl_ub.kinds:ShmBackend",
            devices=cpu,
            priority=20,
            available="sagellm_comm_cxl_ub.probes:shm_available",
            install_hint=HINT,
            scope="host",
            auto_when="sagellm_comm_cxl_ub.probes:one_host_job",
            description="shared-memory collectives between the ranks of one host (POSIX shm, futex wake-ups)",
        )
    )
    registry.register(
        BackendSpec(
            name="cxl",
            factory="sagellm_comm_cxl_ub.kinds:CxlBackend",
            devices=cpu,
            priority=5,
            available="sagellm_comm_cxl_ub.probes:cxl_available",
            install_hint=HINT,
            description="the shared-memory engine over CXL-attached memory (a directory, DAX device or file)",
        )
    )
    registry.register(
        BackendSpec(
            name="ub",
            factory="sagellm_comm_cxl_ub.kinds:UbBackend",
            devices=cpu,
            priority=5,
            available="sagellm_comm_cxl_ub.probes:ub_available",
            install_hint=HINT,
            description="the shared-memory engine over a Unified Bus segment",
        )
    )
