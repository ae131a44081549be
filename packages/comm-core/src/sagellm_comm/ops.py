"""Reduce operations: the protocol's ``ReduceOp`` and the spellings callers use for it.

``CommOp`` is the name sagellm-core imports from ``sagellm_comm.backend``; it *is* the protocol enum (no second
definition), so ``CommOp.SUM is ReduceOp.SUM``. Every API taking ``op`` accepts the enum, its value (``"sum"``),
its name in any case (``"SUM"``) and the torch spelling ``"product"``.
"""

from __future__ import annotations

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.errors import InvalidArgumentError

CommOp = ReduceOp
"""The protocol's ``ReduceOp`` under the name sagellm-core imports (the same enum: ``CommOp.SUM is ReduceOp.SUM``)."""

# dtypes as small integers where ranks exchange descriptions of tensors (shm step tags, gloo P2P frames): the
# position in this tuple. Append only: ranks of one job must agree on it.
WIRE_DTYPES: tuple[torch.dtype, ...] = (
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float64,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
)
"""The dtypes ranks can describe to each other as small integers (the position in this tuple; append only)."""

_ALIASES: dict[str, ReduceOp] = {op.value: op for op in ReduceOp}
_ALIASES.update({op.name.lower(): op for op in ReduceOp})
_ALIASES.update({"product": ReduceOp.PROD, "mean": ReduceOp.AVG, "average": ReduceOp.AVG})


def normalize_reduce_op(op: ReduceOp | str) -> ReduceOp:
    """Return the protocol ``ReduceOp`` for ``op`` or raise ``INVALID_ARGUMENT`` naming the accepted values."""
    if op.__class__ is ReduceOp:
        return op
    if isinstance(op, str):
        found = _ALIASES.get(op.lower())
        if found is not None:
            return found
    else:
        # torch.distributed.ReduceOp / RedOpType members print as e.g. "RedOpType.SUM"
        found = _ALIASES.get(str(op).rsplit(".", 1)[-1].lower())
        if found is not None:
            return found
    valid = ", ".join(o.value for o in ReduceOp)
    raise InvalidArgumentError(f"unknown reduce op {op!r}; use one of: {valid} (strings or sagellm_comm.ReduceOp)")
