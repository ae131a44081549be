"""Entry point of the memory-semantic plugin (group ``sagellm_comm.plugins``, name ``cxl-ub``)."""

from __future__ import annotations

from sagellm_comm.plugins import hookimpl
from sagellm_comm.registry import BackendRegistry, BackendSpec
from sagellm_comm_cxl_ub.kinds import CxlBackend, ShmBackend, UbBackend, cxl_available, shm_available, ub_available


@hookimpl
def sagellm_comm_register_backends(registry: BackendRegistry) -> None:
    cpu = frozenset({"cpu"})
    registry.register(BackendSpec(
        name="shm", factory=ShmBackend, devices=cpu, priority=20, available=shm_available,
        description="shared-memory collectives between the ranks of one host (POSIX shm, futex wake-ups)",
    ))
    registry.register(BackendSpec(
        name="cxl", factory=CxlBackend, devices=cpu, priority=5, available=cxl_available,
        description="the shared-memory engine over CXL-attached memory (a directory, DAX device or file)",
    ))
    registry.register(BackendSpec(
        name="ub", factory=UbBackend, devices=cpu, priority=5, available=ub_available,
        description="the shared-memory engine over a Unified Bus segment",
    ))
