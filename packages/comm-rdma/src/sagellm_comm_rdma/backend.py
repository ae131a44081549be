"""``RdmaBackend``: point-to-point and KV-block transfers on NIXL (UCX underneath).

UCX moves the bytes over the best path it finds per peer: RDMA verbs where an RDMA NIC reaches the peer, kernel-
assisted or shared memory (``cma``, ``sysv``, ``posix``) between processes of one machine, TCP otherwise
(``comm.transfer_engine.transport(rank)`` says which). The backend implements the contract's P2P part (send,
recv, isend, irecv with tags, ``batch_isend_irecv``) through ``p2p.py``; collectives are declared unsupported (use
gloo, shm or nccl for them next to this backend). ``comm.transfer_engine`` is the KV-transfer API: registered
regions, descriptor exchange, batched one-sided writes/reads, notifications (``engine.py``, docs/rdma.md).

Bootstrap goes through the core's rendezvous: each rank publishes its NIXL agent metadata on the side channel at
init and connects to a peer on first use.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from sagellm_comm.backend import CommBackend
from sagellm_comm.capabilities import FLOAT_DTYPES, INT_DTYPES, Capabilities
from sagellm_comm.errors import P2PFailedError
from sagellm_comm.group import CommGroup
from sagellm_comm.rendezvous import Rendezvous
from sagellm_comm.work import Work
from sagellm_comm_rdma.binding import NixlFailure
from sagellm_comm_rdma.engine import TransferEngine
from sagellm_comm_rdma.p2p import P2PProtocol, P2PWork

__all__ = ["RdmaBackend"]


class RdmaBackend(CommBackend):
    name: ClassVar[str] = "rdma"
    engine_checks_p2p: ClassVar[bool] = True  # every message carries its dtype and size (p2p.py)
    capabilities: ClassVar[Capabilities] = Capabilities(
        ops=frozenset({"send", "recv", "batch_p2p"}),
        dtypes=FLOAT_DTYPES | INT_DTYPES | {torch.bool},
        devices=frozenset({"cpu"}),
        non_contiguous=True,
        sub_groups=False,
        async_ops=True,
        concurrent_progress=True,
        p2p_tags=True,
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._engine: TransferEngine | None = None
        self._p2p: P2PProtocol | None = None

    @property
    def transfer_engine(self) -> TransferEngine:
        """The KV-transfer API of this rank (after ``init_process_group``)."""
        self._require_world("transfer_engine")
        assert self._engine is not None
        return self._engine

    def _init(self, rendezvous: Rendezvous, options: dict[str, Any]) -> Any:
        try:
            engine = TransferEngine(
                rendezvous.rank, rendezvous.world_size, rendezvous.store.scope("rdma"), rendezvous.timeout_s
            )
        except (NixlFailure, ImportError) as exc:
            raise P2PFailedError(
                f"rdma: cannot start a NIXL agent: {exc}. Check that nixl-cu12 (or nixl-cu13) is "
                "installed and `sagellm-comm doctor` is clean",
                retryable=False,
            ) from exc
        self._engine, self._p2p = engine, P2PProtocol(engine)
        return "world"

    def _destroy(self) -> None:
        engine, self._engine, self._p2p = self._engine, None, None
        if engine is not None:
            engine.close()

    # ------------------------------------------------------------------------------------------- P2P
    def _post(self, kind: str, tensor: torch.Tensor, peer: int, group: CommGroup, tag: int) -> Any:
        assert self._p2p is not None
        return self._p2p.post(kind, tensor, group.global_ranks[peer], group.group_id, tag, self._timeout(group))

    def _send(self, tensor: torch.Tensor, dst: int, group: CommGroup, tag: int) -> None:
        op = self._post("send", tensor, dst, group, tag)
        self._finish(op, group)

    def _recv(self, tensor: torch.Tensor, src: int, group: CommGroup, tag: int) -> None:
        op = self._post("recv", tensor, src, group, tag)
        self._finish(op, group)

    def _finish(self, op: Any, group: CommGroup) -> None:
        assert self._p2p is not None
        # the protocol enforces the deadline itself; the extra second only covers a stalled progress thread
        if not self._p2p.wait(op, self._timeout(group) + 1.0):
            raise P2PFailedError(f"rdma {op.kind} with rank {op.peer}: the progress thread did not finish it")

    def _isend(self, tensor: torch.Tensor, dst: int, group: CommGroup, tag: int) -> Work:
        assert self._p2p is not None
        return P2PWork("send", self._p2p, self._post("send", tensor, dst, group, tag))

    def _irecv(self, tensor: torch.Tensor, src: int, group: CommGroup, tag: int) -> Work:
        assert self._p2p is not None
        return P2PWork("recv", self._p2p, self._post("recv", tensor, src, group, tag))

    def _timeout(self, group: CommGroup) -> float:
        if group.timeout_s is not None:
            return float(group.timeout_s)
        return float(self.rendezvous.timeout_s) if self.rendezvous is not None else 300.0
