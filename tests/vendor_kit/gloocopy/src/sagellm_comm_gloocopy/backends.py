"""The backends. ``GlooCopy`` is what a vendor writes for a torch.distributed engine: the public base class, a name
and honest capabilities. The others each break one promise in a way that only a careful suite notices."""

from __future__ import annotations

from typing import Any

import torch

from sagellm_comm.capabilities import ALL_OPS, FLOAT_DTYPES, INT_DTYPES, Capabilities
from sagellm_comm.engines.torch_distributed import TorchDistributedBackend
from sagellm_comm.work import Work


class GlooCopy(TorchDistributedBackend):
    name = "gloocopy"
    torch_backend = "gloo"
    capabilities = Capabilities(
        ops=ALL_OPS,
        dtypes=FLOAT_DTYPES | INT_DTYPES | {torch.bool},
        devices=frozenset({"cpu"}),
        reduce_support=Capabilities.reduce_table(FLOAT_DTYPES, INT_DTYPES),
        non_contiguous=True,
        concurrent_progress=True,
    )


class OffByOne(GlooCopy):
    """all_reduce is right everywhere except one element on rank 1."""

    name = "gloocopy-offbyone"

    def _all_reduce(self, tensor, op, group, async_op):  # type: ignore[no-untyped-def]
        work = super()._all_reduce(tensor, op, group, async_op)
        if work is not None:
            work.wait()
        if group.rank == 1 and tensor.numel() > 1:
            tensor.view(-1)[tensor.numel() // 2] += 1
        return None


class WrongRoot(GlooCopy):
    """broadcast always takes the data of the root's right neighbour."""

    name = "gloocopy-wrongroot"

    def _broadcast(self, tensor, src, group, async_op):  # type: ignore[no-untyped-def]
        return super()._broadcast(tensor, (src + 1) % group.world_size, group, async_op)


class _Deferred(Work):
    def __init__(self, run: Any) -> None:
        super().__init__("all_reduce")
        self._run, self._done = run, False

    def is_completed(self) -> bool:
        return self._done

    def _wait(self, timeout: float | None) -> bool:
        if not self._done:
            self._run()
            self._done = True
        return True


class DeferredAsync(GlooCopy):
    """Claims concurrent progress, but an async all_reduce only starts when wait() is called."""

    name = "gloocopy-deferred"

    def _all_reduce(self, tensor, op, group, async_op):  # type: ignore[no-untyped-def]
        if not async_op:
            return super()._all_reduce(tensor, op, group, False)
        return _Deferred(lambda: super(DeferredAsync, self)._all_reduce(tensor, op, group, False))


class BlockingAsync(GlooCopy):
    """Claims concurrent progress, but async_op=True runs the whole all_reduce inside the call."""

    name = "gloocopy-blocking"

    def _all_reduce(self, tensor, op, group, async_op):  # type: ignore[no-untyped-def]
        return super()._all_reduce(tensor, op, group, False)
