"""Deterministic per-rank inputs and locally computed references for the conformance suite.

Every rank can build every other rank's input, so each rank checks its own result against a reference computed
with plain torch on the CPU, in float64/int64, without any communication. Values are small integers so sums and
products are exact in float16 and bfloat16 too. Inputs are built on the CPU and moved to the backend's device
(``device=``); results are brought back to the CPU to be compared, so the same checks hold for CUDA or NPU tensors.
"""

from __future__ import annotations

import torch
from sagellm_protocol import ReduceOp

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int32": torch.int32,
    "int64": torch.int64,
}


def sizes_for(dtype: torch.dtype) -> list[int]:
    """Element counts: empty, one, odd, and 4 MiB worth of this dtype."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return [0, 1, 1021, (4 << 20) // itemsize]


def make_input(
    rank: int,
    numel: int,
    dtype: torch.dtype,
    op: ReduceOp = ReduceOp.SUM,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Rank ``rank``'s input, on ``device`` (CPU when None)."""
    return _values(rank, numel, op, seed).to(dtype=dtype, device=device or "cpu")


def _values(rank: int, numel: int, op: ReduceOp, seed: int) -> torch.Tensor:
    idx = torch.arange(numel, dtype=torch.int64)
    if op is ReduceOp.PROD:
        vals = 1 + (idx + rank + seed) % 2  # 1 or 2: a product over <= 8 ranks stays exact
    elif op in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR):
        vals = (idx * 37 + rank * 13 + seed * 7) % 251
    elif op in (ReduceOp.MIN, ReduceOp.MAX):
        vals = (idx * (rank + 3) + seed) % 17 - 8
    else:
        vals = (idx + seed) % 7 + rank + 1
    return vals


def reduce_reference(inputs: list[torch.Tensor], op: ReduceOp, dtype: torch.dtype) -> torch.Tensor:
    wide = torch.float64 if dtype.is_floating_point else torch.int64
    stacked = torch.stack([t.to(wide) for t in inputs]) if inputs else torch.empty(0, dtype=wide)
    if op is ReduceOp.SUM:
        out = stacked.sum(0)
    elif op is ReduceOp.AVG:
        out = stacked.sum(0) / len(inputs)
    elif op is ReduceOp.PROD:
        out = stacked.prod(0)
    elif op is ReduceOp.MIN:
        out = stacked.min(0).values
    elif op is ReduceOp.MAX:
        out = stacked.max(0).values
    else:
        out = stacked[0].clone()
        for t in stacked[1:]:
            out = {ReduceOp.BAND: torch.bitwise_and, ReduceOp.BOR: torch.bitwise_or, ReduceOp.BXOR: torch.bitwise_xor}[
                op
            ](out, t)
    return out.to(dtype)


def tolerance(dtype: torch.dtype, op: ReduceOp) -> dict[str, float]:
    """Exact for integer inputs; AVG divides, so allow the dtype's rounding."""
    if op is not ReduceOp.AVG or not dtype.is_floating_point:
        return {"rtol": 0.0, "atol": 0.0}
    return {torch.float16: {"rtol": 2e-3, "atol": 2e-3}, torch.bfloat16: {"rtol": 1.6e-2, "atol": 1.6e-2}}.get(
        dtype, {"rtol": 1e-6, "atol": 1e-6}
    )


def check_equal(name: str, got: torch.Tensor, want: torch.Tensor, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Raise AssertionError naming the first wrong element (nccl-tests' #wrong, with a place to look). ``got`` may
    live on any device; it is compared on the CPU."""
    got, want = got.detach().cpu(), want.detach().cpu()
    if got.shape != want.shape and got.numel() == want.numel():
        got = got.reshape(want.shape)
    if got.dtype != want.dtype or got.shape != want.shape:
        raise AssertionError(f"{name}: got {got.dtype}{tuple(got.shape)}, want {want.dtype}{tuple(want.shape)}")
    if got.numel() == 0:
        return
    if rtol == 0.0 and atol == 0.0:
        bad = got != want
    else:
        bad = ~torch.isclose(got.to(torch.float64), want.to(torch.float64), rtol=rtol, atol=atol)
    nbad = int(bad.sum())
    if nbad:
        first = int(bad.reshape(-1).nonzero()[0])
        raise AssertionError(
            f"{name}: {nbad} of {got.numel()} elements wrong; first at [{first}]: got "
            f"{got.reshape(-1)[first].item()}, want {want.reshape(-1)[first].item()}"
        )
