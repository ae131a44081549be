"""sagellm-comm memory-semantic collectives: one engine over a shared mapped region (``shm``, ``cxl``, ``ub``)."""

from sagellm_comm_cxl_ub._version import __version__
from sagellm_comm_cxl_ub.backend import MemoryBackend
from sagellm_comm_cxl_ub.kinds import CxlBackend, ShmBackend, UbBackend

__all__ = ["CxlBackend", "MemoryBackend", "ShmBackend", "UbBackend", "__version__"]
