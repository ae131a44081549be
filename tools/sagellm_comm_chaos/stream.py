"""The seeded stream of mixed collectives every rank of a trial runs, with each result checked.

``op_at(seed, i, world_size, ops)`` is the i-th call of the stream: every rank draws the same one (the draw depends
only on the seed and ``i``). Inputs are small integers that depend on the rank and the call, so every result is
exact in every dtype (bfloat16 included) and each rank computes what it must receive without communicating.
``run_op`` makes the call and raises :class:`WrongData` when the result differs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

__all__ = ["KINDS", "OpSpec", "WrongData", "op_at", "run_op"]

# (kind, weight); a kind runs only when the backend declares the ops it needs
KINDS: tuple[tuple[str, int], ...] = (
    ("all_reduce", 5),
    ("all_reduce_async", 2),
    ("broadcast", 3),
    ("all_gather", 2),
    ("reduce_scatter", 2),
    ("barrier", 1),
    ("p2p_ring", 2),
)
_NEEDS = {"all_reduce_async": "all_reduce", "p2p_ring": "send"}
_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.int32, torch.int64)
_REDUCE = ("sum", "max", "min")
# numels: mostly small, some of several chunks (MiBs), so a timed kill often lands inside a call
_SIZES = ((1, 3), (17, 3), (4096, 3), (65536, 2), (393216, 1))


class WrongData(AssertionError):
    """A call returned without error but with a result other than the expected one."""


@dataclass(frozen=True)
class OpSpec:
    index: int
    kind: str
    dtype: torch.dtype
    numel: int
    reduce: str = "sum"
    root: int = 0

    def describe(self) -> str:
        dt = str(self.dtype).removeprefix("torch.")
        extra = {
            "all_reduce": f" {self.reduce}",
            "all_reduce_async": f" {self.reduce}",
            "reduce_scatter": f" {self.reduce}",
            "broadcast": f" root {self.root}",
        }.get(self.kind, "")
        return f"#{self.index} {self.kind} {dt} x{self.numel}{extra}"


def op_at(seed: int, index: int, world_size: int, ops: frozenset[str] | set[str]) -> OpSpec:
    rng = random.Random(f"chaos-stream:{seed}:{index}")
    kinds = [(k, w) for k, w in KINDS if _NEEDS.get(k, k) in ops]
    kind = rng.choices([k for k, _ in kinds], weights=[w for _, w in kinds])[0]
    numel = rng.choices([n for n, _ in _SIZES], weights=[w for _, w in _SIZES])[0]
    return OpSpec(
        index=index,
        kind=kind,
        dtype=rng.choice(_DTYPES),
        numel=numel,
        reduce=rng.choice(_REDUCE),
        root=rng.randrange(world_size),
    )


def _pattern(spec: OpSpec, rank: int, numel: int | None = None) -> torch.Tensor:
    """Rank ``rank``'s input: small integers (0..12), exact in every dtype and in any sum of 4 of them."""
    n = spec.numel if numel is None else numel
    base = torch.arange(n, dtype=torch.int64) % 7
    return ((base + rank + spec.index) % 13).to(spec.dtype)


def _reduced(spec: OpSpec, world_size: int, numel: int | None = None) -> torch.Tensor:
    parts = torch.stack([_pattern(spec, r, numel).to(torch.float64) for r in range(world_size)])
    out = {"sum": parts.sum(0), "max": parts.amax(0), "min": parts.amin(0)}[spec.reduce]
    return out.to(spec.dtype)


def _check(spec: OpSpec, got: torch.Tensor, want: torch.Tensor, what: str = "") -> None:
    if not torch.equal(got, want):
        bad = int((got != want).sum())
        first = int((got != want).nonzero()[0][0]) if bad else -1
        raise WrongData(
            f"{spec.describe()}{what}: {bad} of {want.numel()} elements wrong (first at {first}: "
            f"got {got.reshape(-1)[first].item()}, want {want.reshape(-1)[first].item()})"
        )


def run_op(comm, spec: OpSpec, rank: int, world_size: int) -> None:
    """Run ``spec`` on ``comm`` (the world group) and check the result; any CommError propagates."""
    kind = spec.kind
    if kind in ("all_reduce", "all_reduce_async"):
        t = _pattern(spec, rank)
        if kind == "all_reduce":
            comm.all_reduce(t, op=spec.reduce)
        else:
            comm.all_reduce(t, op=spec.reduce, async_op=True).wait()
        _check(spec, t, _reduced(spec, world_size))
    elif kind == "broadcast":
        t = _pattern(spec, rank) if rank == spec.root else torch.full((spec.numel,), 99).to(spec.dtype)
        comm.broadcast(t, src_rank=spec.root)
        _check(spec, t, _pattern(spec, spec.root))
    elif kind == "all_gather":
        out = comm.all_gather(_pattern(spec, rank))
        for r in range(world_size):
            _check(spec, out[r], _pattern(spec, r), f" (chunk of rank {r})")
    elif kind == "reduce_scatter":
        per = max(1, spec.numel // world_size)
        out = torch.empty(per, dtype=spec.dtype)
        comm.reduce_scatter(out, _pattern(spec, rank, per * world_size), op=spec.reduce)
        _check(spec, out, _reduced(spec, world_size, per * world_size)[rank * per : (rank + 1) * per])
    elif kind == "barrier":
        comm.barrier()
    elif kind == "p2p_ring":
        nxt, prv = (rank + 1) % world_size, (rank - 1) % world_size
        got = torch.empty(spec.numel, dtype=spec.dtype)
        works = [comm.isend(_pattern(spec, rank), nxt), comm.irecv(got, prv)]
        for w in works:
            w.wait()
        _check(spec, got, _pattern(spec, prv), f" (from rank {prv})")
    else:  # pragma: no cover - KINDS and this function move together
        raise ValueError(f"unknown op kind {kind!r}")
