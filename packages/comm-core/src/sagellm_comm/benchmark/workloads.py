"""One op at one size on one rank: the buffers, our call (through the chosen algorithm), the raw
``torch.distributed`` call on the same sizes, and the correctness pass (nccl-tests' ``#wrong``).

Sizes follow nccl-tests: ``nbytes`` is the whole buffer S. all_reduce, broadcast, reduce and sendrecv move a
buffer of S bytes per rank; all_gather gathers S/p bytes from each rank into S; reduce_scatter reduces S into
S/p per rank; all_to_all sends S/p to each rank. A size that does not split that way is rounded down (to at least
one unit) by :func:`plan_size`, which says so.

Correctness: every rank fills its inputs from :func:`pattern` (small integers, so sums over up to 64 ranks are
exact even in bfloat16), runs the op once, and counts the elements that differ from the reference it computes
locally from every rank's pattern (no communication). Timing runs on zero-filled buffers, which sums keep at zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sagellm_comm.errors import InvalidArgumentError

__all__ = ["SCATTERED_OPS", "RawGroup", "SizePlan", "Workload", "pattern", "plan_size"]

# ops whose S is split over the ranks
SCATTERED_OPS = frozenset({"all_gather", "reduce_scatter", "all_to_all"})
REDUCING_OPS = frozenset({"all_reduce", "reduce_scatter", "reduce"})


@dataclass(frozen=True)
class SizePlan:
    """How a requested size becomes tensors for one op: the bytes asked for, S as reported, the input and output
    element counts, and a note when the size had to be rounded."""

    op: str
    requested_bytes: int
    nbytes: int  # S, what the record reports
    in_numel: int
    out_numel: int
    note: str | None = None


def plan_size(op: str, requested_bytes: int, world_size: int, itemsize: int, dtype_name: str = "") -> SizePlan:
    """The buffers for ``op`` at ``requested_bytes`` on ``world_size`` ranks, rounded to whole elements (and to
    a multiple of the world size where the op splits the buffer), with a note when rounding changed the size."""
    split = op in SCATTERED_OPS
    unit = itemsize * (world_size if split else 1)
    nbytes = max(unit, requested_bytes // unit * unit)
    note = None
    if nbytes != requested_bytes:
        what = f"{world_size} ranks x {itemsize} B" if split else f"{itemsize} B"
        what += f" {dtype_name}" if dtype_name else ""
        note = f"{op}: {requested_bytes} B is not a multiple of {unit} B ({what}); using {nbytes} B"
    numel = nbytes // itemsize
    part = numel // world_size
    in_numel, out_numel = {
        "all_gather": (part, numel),
        "reduce_scatter": (numel, part),
    }.get(op, (numel, numel))
    return SizePlan(op, requested_bytes, nbytes, in_numel, out_numel, note)


def pattern(rank: int, numel: int, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """Rank ``rank``'s check input: values 0..4 that differ between neighbouring ranks and elements."""
    idx = torch.arange(numel, dtype=torch.int64)
    return ((idx * 7 + rank * 3) % 5).to(dtype=dtype, device=device)


def _wide(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype.is_floating_point else torch.int64


def _summed_patterns(n: int, numel: int, wide: torch.dtype) -> torch.Tensor:
    """The element-wise sum of ranks 0..n-1's patterns (small integers in a wide dtype: exact in any order)."""
    return torch.stack([pattern(r, numel, wide) for r in range(n)]).sum(dim=0)


def expected(op: str, rank: int, world_size: int, plan: SizePlan, dtype: torch.dtype, root: int) -> torch.Tensor | None:
    """This rank's reference output of ``op`` (None: nothing to check on this rank)."""
    n, wide = world_size, _wide(dtype)
    if op == "all_reduce" or (op == "reduce" and rank == root):
        out = _summed_patterns(n, plan.in_numel, wide)
    elif op == "reduce":
        return None
    elif op == "broadcast":
        out = pattern(root, plan.in_numel, wide)
    elif op == "all_gather":
        out = torch.cat([pattern(r, plan.in_numel, wide) for r in range(n)])
    elif op == "reduce_scatter":
        out = _summed_patterns(n, plan.in_numel, wide).view(n, -1)[rank]
    elif op == "all_to_all":
        out = torch.cat([pattern(r, plan.in_numel, wide).view(n, -1)[rank] for r in range(n)])
    elif op == "sendrecv":
        out = pattern((rank - 1) % n, plan.in_numel, wide)
    else:
        raise InvalidArgumentError(f"no reference for op {op!r}")
    return out.to(dtype)  # integer dtypes wrap exactly as the reduction on the wire does


@dataclass
class RawGroup:
    """The raw ``torch.distributed`` group compared against, and the device its tensors live on."""

    group: Any
    backend: str
    device: torch.device


def _raw_call(op: str, raw: RawGroup, inp: torch.Tensor, out: torch.Tensor, root: int) -> Callable[[], Any]:
    import torch.distributed as dist

    g = raw.group
    n, r = dist.get_world_size(g), dist.get_rank(g)
    if op == "all_reduce":
        return lambda: dist.all_reduce(out, group=g)
    if op == "all_gather":
        return lambda: dist.all_gather_into_tensor(out, inp, group=g)
    if op == "reduce_scatter":
        return lambda: dist.reduce_scatter_tensor(out, inp, group=g)
    if op == "broadcast":
        return lambda: dist.broadcast(out, src=dist.get_global_rank(g, root), group=g)
    if op == "reduce":
        return lambda: dist.reduce(out, dst=dist.get_global_rank(g, root), group=g)
    if op == "all_to_all":
        return lambda: dist.all_to_all_single(out, inp, group=g)
    if op == "sendrecv":
        if n == 1:
            return lambda: out.copy_(inp)
        right, left = dist.get_global_rank(g, (r + 1) % n), dist.get_global_rank(g, (r - 1) % n)

        def sendrecv() -> None:
            ops = [dist.P2POp(dist.irecv, out, left, g), dist.P2POp(dist.isend, inp, right, g)]
            for work in dist.batch_isend_irecv(ops):
                work.wait()

        return sendrecv
    raise InvalidArgumentError(f"no raw torch.distributed call for op {op!r}")


class Workload:
    """Buffers and calls for ``op`` on one rank. ``ours()`` runs the algorithm on the backend, ``raw()`` the
    same op with plain torch.distributed, ``check()`` returns the number of wrong elements on this rank."""

    def __init__(
        self,
        op: str,
        plan: SizePlan,
        dtype: torch.dtype,
        comm: Any,
        algo_fn: Callable[..., Any],
        root: int = 0,
        raw: RawGroup | None = None,
    ) -> None:
        self.op, self.plan, self.dtype, self.comm, self.root = op, plan, dtype, comm, root
        self.group = comm.world_group
        device = comm.device
        self.inp = torch.zeros(plan.in_numel, dtype=dtype, device=device)
        in_place = op in ("all_reduce", "broadcast", "reduce")
        self.out = self.inp if in_place else torch.zeros(plan.out_numel, dtype=dtype, device=device)
        self._ours = self._our_call(algo_fn)
        self._raw = None
        if raw is not None:
            self.raw_inp = torch.zeros(plan.in_numel, dtype=dtype, device=raw.device)
            self.raw_out = self.raw_inp if in_place else torch.zeros(plan.out_numel, dtype=dtype, device=raw.device)
            self._raw = _raw_call(op, raw, self.raw_inp, self.raw_out, root)
        self._raw_group = raw

    def _our_call(self, fn: Callable[..., Any]) -> Callable[[], Any]:
        comm, g, inp, out, root = self.comm, self.group, self.inp, self.out, self.root
        return {
            "all_reduce": lambda: fn(comm, out, "sum", g),
            "all_gather": lambda: fn(comm, out, inp, g),
            "reduce_scatter": lambda: fn(comm, out, inp, "sum", g),
            "broadcast": lambda: fn(comm, out, root, g),
            "reduce": lambda: fn(comm, out, root, "sum", g),
            "all_to_all": lambda: fn(comm, out, inp, g),
            "sendrecv": lambda: fn(comm, out, inp, g),
        }[self.op]

    @property
    def has_raw(self) -> bool:
        return self._raw is not None

    def ours(self) -> None:
        self._ours()

    def raw(self) -> None:
        if self._raw is None:
            raise InvalidArgumentError("no raw torch.distributed group on this rank (set up without compare)")
        self._raw()

    def raw_barrier(self) -> None:
        import torch.distributed as dist

        if self._raw_group is None:
            raise InvalidArgumentError("no raw torch.distributed group on this rank (set up without compare)")
        dist.barrier(group=self._raw_group.group)

    def check(self) -> int:
        """Run the op once on the check pattern; the number of output elements that differ from the reference.
        The buffers are zeroed again afterwards for timing."""
        g = self.group
        self.inp.copy_(pattern(g.rank, self.plan.in_numel, self.dtype))
        if self.out is not self.inp:
            self.out.zero_()
        self._ours()
        want = expected(self.op, g.rank, g.world_size, self.plan, self.dtype, self.root)
        got = self.out.cpu()
        wrong = 0 if want is None else int((got != want).sum())
        self.inp.zero_()
        self.out.zero_()
        return wrong
