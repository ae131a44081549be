"""sagellm-comm: the communication layer of sageLLM.

One contract (``CommBackend``, groups, work handles, protocol-coded errors) and many backends installed as
plugins::

    from sagellm_comm import get_comm_backend
    comm = get_comm_backend("gloo")             # or "auto"
    comm.init_process_group(world_size=2, rank=0)
    comm.all_reduce(tensor, op="sum")
"""

from sagellm_protocol import CollectiveOp, CommBackendType, CommGroupInfo, ReduceOp

from sagellm_comm._version import __version__
from sagellm_comm.backend import CommBackend, P2POp
from sagellm_comm.capabilities import Capabilities
from sagellm_comm.collective_ops import CollectiveOps
from sagellm_comm.errors import (
    BackendNotSupportedError,
    CollectiveFailedError,
    CommError,
    CommTimeoutError,
    GroupInvalidError,
    GroupNotFoundError,
    InvalidArgumentError,
    NotInitializedError,
    P2PFailedError,
    RankMismatchError,
)
from sagellm_comm.group import CommGroup
from sagellm_comm.ops import CommOp
from sagellm_comm.registry import (
    BackendSpec,
    BackendStatus,
    get_comm_backend,
    is_comm_backend_available,
    list_comm_backends,
    register_comm_backend,
)
from sagellm_comm.topology import Topology
from sagellm_comm.work import Work

__all__ = [
    "BackendNotSupportedError",
    "BackendSpec",
    "BackendStatus",
    "Capabilities",
    "CollectiveFailedError",
    "CollectiveOp",
    "CollectiveOps",
    "CommBackend",
    "CommBackendType",
    "CommError",
    "CommGroup",
    "CommGroupInfo",
    "CommOp",
    "CommTimeoutError",
    "GroupInvalidError",
    "GroupNotFoundError",
    "InvalidArgumentError",
    "NotInitializedError",
    "P2PFailedError",
    "P2POp",
    "RankMismatchError",
    "ReduceOp",
    "Topology",
    "Work",
    "__version__",
    "get_comm_backend",
    "is_comm_backend_available",
    "list_comm_backends",
    "register_comm_backend",
]
