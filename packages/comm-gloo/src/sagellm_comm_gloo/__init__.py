"""sagellm-comm Gloo plugin."""

from sagellm_comm_gloo._version import __version__
from sagellm_comm_gloo.backend import GlooBackend

__all__ = ["GlooBackend", "__version__"]
