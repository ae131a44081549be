"""``HcclBackend``: the contract on torch_npu's HCCL process group (Huawei Ascend NPUs).

torch_npu registers the ``hccl`` c10d backend and the ``npu`` device with torch when it is imported; from then on
``TorchDistributedBackend`` does the work: one NPU per rank (``npu:<LOCAL_RANK>`` unless ``device=`` says
otherwise), the default process group built on the core's store, and every op mapped to ``torch.distributed``.
HCCL ops run on the process group's NPU streams, so async ops progress on their own (``concurrent_progress``);
``Work.wait()`` orders the caller's current stream after the op, ``synchronize()`` also blocks the host.

What is declared, and on what it rests (checked in torch_npu's source at master and in the release branches
v2.4.0-6.0.0, v2.4.0-7.0.0, v2.5.1-7.0.0, v2.6.0-7.1.0, v2.7.1-7.2.0, v2.8.0-26.0.0, v2.9.0-26.0.0, v2.10.0-26.1.0,
v2.12.0-26.1.0 of https://github.com/Ascend/pytorch, and in the CANN HCCL API reference). The products are
Atlas A2/A3 (Ascend 910B/910C), the ones torch_npu documents ProcessGroupHCCL for
(https://github.com/Ascend/op-plugin/blob/master/docs/context/c10d_npu-ProcessGroupHCCL.md):

- reduce ops: torch_npu maps MIN, MAX, SUM, PRODUCT to HCCL (``hcclOp`` in
  torch_npu/csrc/distributed/ProcessGroupHCCL.cpp) and refuses BAND/BOR/BXOR ("Cannot use ReduceOp.BAND with
  HCCL", ``unsupportedOp``): no bitwise ops. AVG is not an HCCL op; newer torch_npu emulates it (SUM, then a
  division) but v2.4.0-6.0.0 does not, so ``native_avg = False``: the base class does SUM and divides, on every
  version; only on floating dtypes (an integer division in place would fail).
- reduction dtypes: ``checkSupportedDataType`` accepts int8, int16, int32, int64, float16, float32, bfloat16 for
  all_reduce/reduce/reduce_scatter (float64 only on Ascend950); uint8 and bool are cast to int32 by all_reduce and
  reduce but not by reduce_scatter, so they are not declared for reductions. HcclAllReduce/HcclReduceScatter
  (https://www.hiascend.com/document/detail/zh/CANNCommunityEdition/83RC1alpha002/API/hcclapiref/hcclcpp_07_0020.html,
  .../hcclcpp_07_0024.html): "prod" does not support int16 and bfp16 on A2/A3, so PROD excludes bfloat16.
- data-movement dtypes: torch_npu maps uint8, int8, int32, int64, float16, float32, float64, bfloat16 and bool (as
  uint8) to HCCL types (``kScalarTypeToHcclDataType``, torch_npu/csrc/distributed/HCCLUtils.cpp); HcclAllGather,
  HcclBroadcast, HcclScatter, HcclAlltoAll, HcclSend/HcclRecv accept all of them on A2/A3
  (hcclcpp_07_0023, _0022, _0029, _0026, _0031, _0032 of the same reference).
- ops: broadcast, all_reduce, reduce, all_gather (+ into tensor), reduce_scatter, all_to_all (single and list),
  scatter, barrier, send, recv are implemented by ProcessGroupHCCL. Not declared: gather (ProcessGroupHCCL raises
  "ProcessGroupHCCL does not support gather" unless a compatibility mode is switched on).
- batch_p2p: HcclSend/HcclRecv are synchronous and must be paired, so a ring of separate ones where every rank sends
  first can deadlock; ``fused_batch_p2p`` starts the batch through ``torch.distributed.batch_isend_irecv``, which
  torch_npu runs as one ``HcclBatchSendRecv``.
- p2p_tags: ``ProcessGroupHCCL::send/recv`` ignore ``tag`` (as NCCL does): non-zero tags are refused by the core.
- non_contiguous: the base class makes contiguous copies (and copies results back).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.capabilities import Capabilities
from sagellm_comm.engines.torch_distributed import TorchDistributedBackend
from sagellm_comm.errors import BackendNotSupportedError
from sagellm_comm.rendezvous import Rendezvous
from sagellm_comm_hccl.probes import hccl_available, load_torch_npu

__all__ = ["HCCL_CAPABILITIES", "HcclBackend"]

_FLOATS = frozenset({torch.float32, torch.float16, torch.bfloat16})
_REDUCIBLE = _FLOATS | {torch.int8, torch.int32, torch.int64}

HCCL_CAPABILITIES = Capabilities(
    ops=frozenset(
        {
            "all_reduce",
            "all_gather",
            "all_gather_into_tensor",
            "reduce_scatter",
            "broadcast",
            "reduce",
            "scatter",
            "all_to_all",
            "barrier",
            "send",
            "recv",
            "batch_p2p",
        }
    ),
    dtypes=_FLOATS | {torch.float64, torch.int8, torch.uint8, torch.int32, torch.int64, torch.bool},
    devices=frozenset({"npu"}),
    reduce_support={
        ReduceOp.SUM: _REDUCIBLE,
        ReduceOp.MIN: _REDUCIBLE,
        ReduceOp.MAX: _REDUCIBLE,
        ReduceOp.PROD: _REDUCIBLE - {torch.bfloat16},
        ReduceOp.AVG: _FLOATS,
    },
    non_contiguous=True,
    sub_groups=True,
    async_ops=True,
    concurrent_progress=True,
    p2p_tags=False,
)


def _refuse(why: str) -> BackendNotSupportedError:
    return BackendNotSupportedError(f"backend 'hccl' cannot run here: {why}")


class HcclBackend(TorchDistributedBackend):
    """torch.distributed's ``hccl`` process group (torch_npu), one Ascend NPU per rank."""

    name: ClassVar[str] = "hccl"
    torch_backend: ClassVar[str] = "hccl"
    device_type: ClassVar[str] = "npu"
    native_avg: ClassVar[bool] = False
    fused_batch_p2p: ClassVar[bool] = True  # torch_npu's batch_isend_irecv: one HcclBatchSendRecv
    capabilities: ClassVar[Capabilities] = HCCL_CAPABILITIES

    def _init(self, rendezvous: Rendezvous, options: dict[str, Any]) -> Any:
        """Import torch_npu (it registers ``hccl`` and ``npu``), check there is an NPU, then join the world."""
        module, why = load_torch_npu()
        if module is None:
            raise _refuse(why)
        ok, reason = hccl_available()  # the class may be built directly, bypassing the registry's check
        if not ok:
            raise _refuse(reason)
        return super()._init(rendezvous, options)
