"""What a backend declares it supports: ops, reduce ops per dtype, dtypes, devices and behaviours.

The core checks every call against these declarations before the backend sees it, so an undeclared combination
fails the same way on every backend (``COMM_BACKEND_NOT_SUPPORTED`` naming backend and op) instead of being
silently emulated, and the conformance suite skips what is not declared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from sagellm_protocol import CollectiveOp, ReduceOp

# Operation names a backend can declare. The protocol's CollectiveOp values, plus the contract's ops that the
# protocol enum does not list (gather, scatter, the into-tensor all_gather and batched P2P).
PROTOCOL_OPS: frozenset[str] = frozenset(op.value for op in CollectiveOp)
"""The values of the protocol's ``CollectiveOp`` (``"all_reduce"``, ``"send"``, ...)."""
EXTRA_OPS: frozenset[str] = frozenset({"all_gather_into_tensor", "gather", "scatter", "batch_p2p"})
"""The contract's ops that ``CollectiveOp`` does not list."""
ALL_OPS: frozenset[str] = PROTOCOL_OPS | EXTRA_OPS
"""Every operation name a backend can declare in ``Capabilities.ops``."""

FLOAT_DTYPES: frozenset[torch.dtype] = frozenset({torch.float32, torch.float16, torch.bfloat16, torch.float64})
"""The floating-point dtypes a backend usually declares (an argument of ``Capabilities.reduce_table``)."""
INT_DTYPES: frozenset[torch.dtype] = frozenset({torch.int8, torch.uint8, torch.int32, torch.int64})
"""The integer dtypes a backend usually declares."""
ARITHMETIC_OPS: frozenset[ReduceOp] = frozenset({ReduceOp.SUM, ReduceOp.PROD, ReduceOp.MIN, ReduceOp.MAX})
"""Reductions defined on floats and integers (``reduce_table`` gives them both)."""
BITWISE_OPS: frozenset[ReduceOp] = frozenset({ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR})
"""Reductions defined on integers (and bool) only."""


@dataclass(frozen=True)
class Capabilities:
    """A backend's declaration.

    ``reduce_support`` maps each reduce op to the dtypes it can reduce; an op absent from it is not supported.
    ``non_contiguous``: True means non-contiguous tensors give a correct result; False means they are rejected with
    ``INVALID_ARGUMENT`` (both are conformant, the suite checks the declared one).

    Asynchrony is two claims (see docs/streams.md):

    - ``async_ops``: the backend *accepts* ``async_op=True`` and returns a ``Work``;
    - ``concurrent_progress``: an async op *progresses on its own* while the caller does other work (a progress
      thread, the engine's own threads, a device stream), so it can complete before ``wait()`` is called. False means
      the op may only run inside the call or inside ``wait()``. The conformance suite checks a True claim causally:
      a peer's blocking op must complete while this rank, having submitted its own op, never calls the backend.
    """

    ops: frozenset[str]
    dtypes: frozenset[torch.dtype]
    devices: frozenset[str]
    reduce_support: Mapping[ReduceOp, frozenset[torch.dtype]] = field(default_factory=dict)
    non_contiguous: bool = False
    sub_groups: bool = True
    async_ops: bool = True
    concurrent_progress: bool = False
    p2p_tags: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.ops) - ALL_OPS
        if unknown:
            raise ValueError(f"unknown op names in capabilities: {sorted(unknown)}; known: {sorted(ALL_OPS)}")
        if self.concurrent_progress and not self.async_ops:
            raise ValueError(
                "concurrent_progress=True needs async_ops=True: only async ops can progress in the background"
            )

    @property
    def reduce_ops(self) -> frozenset[ReduceOp]:
        return frozenset(op for op, dts in self.reduce_support.items() if dts)

    def supports_op(self, op: str) -> bool:
        """Whether the operation name ``op`` (one of ``ALL_OPS``) is declared."""
        return op in self.ops

    def supports_reduce(self, op: ReduceOp, dtype: torch.dtype) -> bool:
        """Whether reducing ``dtype`` with ``op`` is declared (``reduce_support[op]`` holds ``dtype``)."""
        dts = self.reduce_support.get(op)
        return dts is not None and dtype in dts

    def declares(self, op: str, dtype: torch.dtype, reduce_op: ReduceOp | None = None) -> bool:
        """Whether ``op`` on ``dtype`` (reducing with ``reduce_op``, if it reduces) is declared."""
        return op in self.ops and dtype in self.dtypes and (reduce_op is None or self.supports_reduce(reduce_op, dtype))

    @staticmethod
    def reduce_table(
        float_dtypes: Iterable[torch.dtype],
        int_dtypes: Iterable[torch.dtype],
        *,
        avg_on_floats: bool = True,
        bool_ok: bool = False,
    ) -> dict[ReduceOp, frozenset[torch.dtype]]:
        """The usual table: arithmetic ops on floats and ints, bitwise ops on ints (and bool), AVG on floats."""
        floats, ints = frozenset(float_dtypes), frozenset(int_dtypes)
        bools = frozenset({torch.bool}) if bool_ok else frozenset()
        table = {op: floats | ints | bools for op in ARITHMETIC_OPS}
        table.update({op: ints | bools for op in BITWISE_OPS})
        if avg_on_floats:
            table[ReduceOp.AVG] = floats
        return table

    def describe(self) -> dict[str, object]:
        """The declaration as a JSON-serialisable dict (names, not torch objects), as the registry reports it."""
        return {
            "ops": sorted(self.ops),
            "dtypes": sorted(str(d).removeprefix("torch.") for d in self.dtypes),
            "devices": sorted(self.devices),
            "reduce_ops": sorted(op.value for op in self.reduce_ops),
            "non_contiguous": self.non_contiguous,
            "sub_groups": self.sub_groups,
            "async_ops": self.async_ops,
            "concurrent_progress": self.concurrent_progress,
            "p2p_tags": self.p2p_tags,
        }
