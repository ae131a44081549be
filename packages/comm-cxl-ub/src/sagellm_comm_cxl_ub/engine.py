"""``RegionEngine``: every collective of the contract as loads and stores into one group's shared region.

The unit of work is a *step*: a rank stores its part into its slot of the step's parity (``step % 2``), signals the
step, waits until every rank of the group signalled it, then reads what it needs from any slot. A rank only stores
into parity ``p`` at step ``s`` after it saw every rank reach ``s - 1``, i.e. after every rank finished reading
step ``s - 2``, the last one that used ``p`` -- so two slots per rank (double buffering) make one synchronisation
per step enough, and a rank copying in chunk ``k + 1`` overlaps peers still reducing chunk ``k``. Messages larger
than a slot go through in slot-sized chunks, one step each.

All-reduce has two algorithms: ``direct`` (one step per chunk: every rank reduces all ``n`` slots itself; cheapest
in synchronisations, reads ``n`` chunks) and ``split`` (two steps per chunk: rank ``r`` reduces piece ``r`` of the
chunk into its slot of the next parity, then everyone copies the ``n`` reduced pieces: reads ~2 chunks whatever
``n`` is). ``direct`` is used for 2 ranks and for small chunks, ``split`` beyond.

Every step is tagged: before signalling step ``s`` a rank writes (op, dtype, numel, root, reduce op) of the call
it is running next to its step counter (parity ``s % 2``, the same double buffering as the data), and after the
wait it compares every peer's tag with its own. Ranks that called different collectives, or the same one with other
sizes, dtypes, roots or reduce ops, all see the difference at the same step -- the call's first -- and all raise
``COMM_RANK_MISMATCH`` naming what differed on which rank, before any data is read. The step counters stay aligned,
so the group remains usable; without the tags the call would return wrong data and no error.

The native engine (``bind_native``; csrc/) runs the same protocol compiled: all_reduce is one call into C (copy-in,
tagged sync, reduction, every chunk), and every other op's synchronisation goes through its acquire/release
signal and wait. Every rank of a group runs the same engine (the backend decides at group setup), because the
native all_reduce sizes its steps differently.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Sequence
from typing import Any

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.errors import RankMismatchError
from sagellm_comm.ops import WIRE_DTYPES
from sagellm_comm_cxl_ub import native
from sagellm_comm_cxl_ub.layout import TAG_BYTES, Layout
from sagellm_comm_cxl_ub.native import SG_MISMATCH, SG_OK, SG_UNSUPPORTED
from sagellm_comm_cxl_ub.reduce_kernels import reduce_rows
from sagellm_comm_cxl_ub.sync import StepCounters

__all__ = ["NATIVE_SPLIT_MIN_BYTES", "SPLIT_MIN_BYTES", "RegionEngine"]

SPLIT_MIN_BYTES = 256 << 10  # all_reduce chunks at least this big use ``split`` when n > 2
# the native engine splits once the (n - 2) extra chunks ``direct`` would read reach this (csrc/allreduce.c):
# measured here (3 and 4 ranks on 2 cores) split wins from 64 KiB at 3 ranks and 32 KiB at 4, direct below
NATIVE_SPLIT_MIN_BYTES = 64 << 10

_TAG = struct.Struct("<iiqii")  # op, dtype, numel, root, reduce op (the step counters already align the steps)
assert _TAG.size <= TAG_BYTES
# ops whose steps are interchangeable share a code (all_gather into a list or into one tensor store the same chunks)
OP_CODES = {
    "barrier": 1,
    "all_reduce": 2,
    "reduce": 3,
    "broadcast": 4,
    "all_gather": 5,
    "all_gather_into_tensor": 5,
    "gather": 6,
    "scatter": 7,
    "reduce_scatter": 8,
    "all_to_all": 9,
}
_OP_NAMES = {v: k for k, v in reversed(OP_CODES.items())}
_DTYPES = WIRE_DTYPES
_DTYPE_CODES = {d: i + 1 for i, d in enumerate(_DTYPES)}  # 0: the call has no tensor
_REDOPS = tuple(ReduceOp)
_REDOP_CODES = {op: i for i, op in enumerate(_REDOPS)}
_ALGO_CODES = {"auto": 0, "direct": 1, "split": 2}


def _flat(t: torch.Tensor) -> tuple[torch.Tensor, Callable[[], None] | None]:
    """A contiguous 1-D view of ``t`` and, when ``t`` is not contiguous, how to copy the result back into it.
    ``as_strided``, not ``view(-1)``: a contiguous tensor of at most one element may carry any stride, which
    ``view(-1)`` keeps and ``view(torch.uint8)`` then refuses."""
    if t.is_contiguous():
        return t.as_strided((t.numel(),), (1,)), None
    tmp = t.contiguous().view(-1)
    return tmp, lambda: t.copy_(tmp.view_as(t))


def _describe(tag: tuple[int, ...]) -> str:
    op, dtype, numel, root, redop = tag
    text = f"{_OP_NAMES.get(op, f'op {op}')}"
    if dtype:
        text += f" {str(_DTYPES[dtype - 1]).removeprefix('torch.')}"
    if numel >= 0:
        text += f" x{numel}"
    if root >= 0:
        text += f" root {root}"
    if redop >= 0:
        text += f" {_REDOPS[redop].value}"
    return text


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.uint8) if t.dtype != torch.uint8 else t


class RegionEngine:
    def __init__(self, base: torch.Tensor, layout: Layout, rank: int, counters: StepCounters) -> None:
        self.base = base  # uint8 view of the whole group region
        self.layout = layout
        self.rank = rank
        self.n = layout.world_size
        self.counters = counters
        self.step = 0
        self.slot = layout.slot_bytes
        self.algo = "auto"  # all_reduce: "auto", "direct" or "split" (SAGELLM_COMM_SHM_ALLREDUCE)
        self._parity = [
            base[layout.parity_off(p) : layout.parity_off(p) + self.n * self.slot].view(self.n, self.slot)
            for p in (0, 1)
        ]
        self._mem: memoryview | None = memoryview(base.numpy())
        self._tag_offs = [[layout.tag_off(r, p) for p in (0, 1)] for r in range(self.n)]
        self._tag = _TAG.pack(0, 0, -1, -1, -1)
        self._tags: dict[tuple, bytes] = {}  # packed tags of recent calls (a decode step repeats the same few)
        self._native: Any = None  # the group's native ``Group`` once bound
        self._gaddr: int | None = None  # its address: set when the native engine is bound

    @property
    def path(self) -> str:
        return "native" if self._gaddr is not None else "python"

    def bind_native(self, group: Any) -> None:
        """Run all_reduce and every step's synchronisation through the native library."""
        group.tag_len = _TAG.size
        self._native, self._gaddr = group, ctypes.addressof(group)
        self._call, self._sync_call = native.calls["all_reduce"], native.calls["sync"]
        self.counters.bind_native(group)

    def close(self) -> None:
        """Drop every view of the region (the mapping cannot be closed while one exists)."""
        self._gaddr = self._native = None
        if self._mem is not None:
            self._mem.release()
        self._mem = None
        self.base = None  # type: ignore[assignment]
        self._parity = []

    def expect(
        self,
        op: str,
        dtype: torch.dtype | None = None,
        numel: int = -1,
        root: int = -1,
        reduce_op: ReduceOp | None = None,
    ) -> None:
        """Declare the call the next steps belong to; every rank's declaration is compared at each step."""
        key = (op, dtype, numel, root, reduce_op)
        tag = self._tags.get(key)
        if tag is None:
            if len(self._tags) > 4096:
                self._tags.clear()
            tag = self._tags[key] = _TAG.pack(
                OP_CODES[op],
                _DTYPE_CODES.get(dtype, 0) if dtype is not None else 0,
                numel,
                root,
                _REDOPS.index(reduce_op) if reduce_op is not None else -1,
            )
        self._tag = tag

    # --------------------------------------------------------------------------------------------- plumbing
    def _next(self) -> tuple[int, torch.Tensor]:
        self.step += 1
        return self.step, self._parity[self.step & 1]

    def _sync(self, step: int, timeout_s: float | None = None) -> None:
        if self._gaddr is not None:
            status = self._sync_call(self._gaddr, step, self._tag, timeout_s or 0.0)
            if status != SG_OK:
                self._failed(status, step, timeout_s)
            return
        mem, parity, mine, size = self._mem, step & 1, self._tag, _TAG.size
        if mem is not None:
            off = self._tag_offs[self.rank][parity]
            mem[off : off + size] = mine
        self.counters.signal(step)
        self.counters.wait_all(step, timeout_s)
        if mem is not None:
            for j, offs in enumerate(self._tag_offs):
                off = offs[parity]
                if mem[off : off + size] != mine and j != self.rank:
                    self._mismatch(step, parity)

    def _failed(self, status: int, step: int, timeout_s: float | None = None) -> None:
        if status == SG_MISMATCH:
            self._mismatch(step, step & 1)
        self.counters.check(status, step, timeout_s)

    def _mismatch(self, step: int, parity: int) -> None:
        assert self._mem is not None
        seen = [_TAG.unpack(bytes(self._mem[o[parity] : o[parity] + _TAG.size])) for o in self._tag_offs]
        names = ("op", "dtype", "numel", "root", "reduce op")
        differ = [names[i] for i in range(len(names)) if len({t[i] for t in seen}) > 1]
        calls = "; ".join(f"rank {self.counters.global_ranks[j]}: {_describe(t)}" for j, t in enumerate(seen))
        calls += f" (step {step} of the group)"
        raise RankMismatchError(
            f"group {self.counters.group_id}: the ranks are not running the same collective (they differ in "
            f"{', '.join(differ)}) -- {calls}. Every rank must call the same ops in the same order with matching "
            "tensors; no data was exchanged for this call, the group stays usable."
        )

    def _rows(self, slots: torch.Tensor, nbytes: int, dtype: torch.dtype) -> torch.Tensor:
        rows = slots[:, :nbytes]
        return rows.view(dtype) if dtype != torch.uint8 else rows

    def _elems_per_chunk(self, t: torch.Tensor, parts: int = 1) -> int:
        return max(1, (self.slot // parts) // t.element_size())

    # -------------------------------------------------------------------------------------------- collectives
    def barrier(self, timeout_s: float | None = None) -> None:
        step, _ = self._next()
        self._sync(step, timeout_s)

    def all_reduce(self, tensor: torch.Tensor, op: ReduceOp) -> None:
        if self._gaddr is not None and tensor.is_contiguous() and self._all_reduce_native(tensor, op):
            return  # the common case: no view to make (a view costs more than the native call's own overhead)
        flat, back = _flat(tensor)
        if self._gaddr is not None and back is not None and self._all_reduce_native(flat, op):
            back()
            return
        numel = flat.numel()
        per = self._elems_per_chunk(flat)
        esize = flat.element_size()
        algo = self.algo
        if algo == "auto":
            algo = "split" if self.n > 2 and min(numel, per) * esize >= SPLIT_MIN_BYTES else "direct"
        run = self._all_reduce_split if algo == "split" and self.n > 1 else self._all_reduce_direct
        for a in range(0, max(numel, 1), per):
            run(flat[a : min(numel, a + per)], op)
        if back:
            back()

    def tagged_all_reduce(self, tensor: torch.Tensor, op: ReduceOp) -> None:
        """``expect`` the call's signature, then ``all_reduce``."""
        self.expect("all_reduce", tensor.dtype, tensor.numel(), -1, op)
        self.all_reduce(tensor, op)

    def _all_reduce_native(self, flat: torch.Tensor, op: ReduceOp) -> bool:
        """One call into C for the whole (contiguous) tensor; False (nothing done) for a dtype/op it was not built
        for."""
        g = self._native
        g.step = self.step
        status = self._call(
            self._gaddr,
            flat.data_ptr(),
            flat.numel(),
            _DTYPE_CODES[flat.dtype],
            _REDOP_CODES[op],
            self._tag,
            _ALGO_CODES[self.algo],
        )
        self.step = g.step
        if status == SG_UNSUPPORTED:
            return False
        if status != SG_OK:
            self._failed(status, g.err_step)
        return True

    def _all_reduce_direct(self, chunk: torch.Tensor, op: ReduceOp) -> None:
        step, slots = self._next()
        nbytes = chunk.numel() * chunk.element_size()
        slots[self.rank, :nbytes].copy_(_bytes(chunk))
        self._sync(step)
        if nbytes:
            reduce_rows(self._rows(slots, nbytes, chunk.dtype), op, chunk, holds=self.rank)

    def _all_reduce_split(self, chunk: torch.Tensor, op: ReduceOp) -> None:
        n, esize, numel = self.n, chunk.element_size(), chunk.numel()
        step, slots = self._next()
        slots[self.rank, : numel * esize].copy_(_bytes(chunk))
        self._sync(step)
        piece = (numel + n - 1) // n
        lo, hi = min(numel, self.rank * piece), min(numel, (self.rank + 1) * piece)
        step2, out_slots = self._next()
        if hi > lo:
            rows = self._rows(slots, numel * esize, chunk.dtype)[:, lo:hi]
            reduce_rows(rows, op, out_slots[self.rank, : (hi - lo) * esize].view(chunk.dtype))
        self._sync(step2)
        for j in range(n):
            jl, jh = min(numel, j * piece), min(numel, (j + 1) * piece)
            if jh > jl:
                chunk[jl:jh].copy_(out_slots[j, : (jh - jl) * esize].view(chunk.dtype))

    def reduce(self, tensor: torch.Tensor, dst: int, op: ReduceOp) -> None:
        flat, back = _flat(tensor)
        per = self._elems_per_chunk(flat)
        for a in range(0, max(flat.numel(), 1), per):
            chunk = flat[a : a + per]
            step, slots = self._next()
            nbytes = chunk.numel() * chunk.element_size()
            slots[self.rank, :nbytes].copy_(_bytes(chunk))
            self._sync(step)
            if self.rank == dst and nbytes:
                reduce_rows(self._rows(slots, nbytes, chunk.dtype), op, chunk, holds=self.rank)
        if back and self.rank == dst:
            back()

    def broadcast(self, tensor: torch.Tensor, src: int) -> None:
        flat, back = _flat(tensor)
        data = _bytes(flat)
        for a in range(0, max(data.numel(), 1), self.slot):
            piece = data[a : a + self.slot]
            step, slots = self._next()
            if self.rank == src:
                slots[src, : piece.numel()].copy_(piece)
            self._sync(step)
            if self.rank != src:
                piece.copy_(slots[src, : piece.numel()])
        if back and self.rank != src:
            back()

    def all_gather_into(self, outputs: Sequence[torch.Tensor], tensor: torch.Tensor) -> None:
        """``outputs[j]`` (1-D byte views, contiguous) receive rank ``j``'s ``tensor``."""
        self._collect(tensor, outputs)

    def all_gather_tensor(self, output: torch.Tensor, tensor: torch.Tensor) -> None:
        """``output`` holds ``n`` blocks of ``tensor``'s size, rank-major: one strided copy per chunk."""
        out_flat, back = _flat(output)
        flat, _ = _flat(tensor)
        data = _bytes(flat)
        total = data.numel()
        out2d = _bytes(out_flat).view(self.n, total) if total else None
        for a in range(0, max(total, 1), self.slot):
            piece = data[a : a + self.slot]
            k = piece.numel()
            step, slots = self._next()
            slots[self.rank, :k].copy_(piece)
            self._sync(step)
            if k and out2d is not None:
                out2d[:, a : a + k].copy_(slots[:, :k])
        if back:
            back()

    def gather(self, tensor: torch.Tensor, outputs: Sequence[torch.Tensor] | None, dst: int) -> None:
        self._collect(tensor, outputs if self.rank == dst else None)

    def _collect(self, tensor: torch.Tensor, outputs: Sequence[torch.Tensor] | None) -> None:
        """Every rank stores ``tensor`` chunk by chunk; ranks given ``outputs`` copy rank ``j``'s into
        ``outputs[j]`` (all ranks for all_gather, the root for gather)."""
        data = _bytes(_flat(tensor)[0])
        for a in range(0, max(data.numel(), 1), self.slot):
            piece = data[a : a + self.slot]
            k = piece.numel()
            step, slots = self._next()
            slots[self.rank, :k].copy_(piece)
            self._sync(step)
            if k and outputs is not None:
                for j, out in enumerate(outputs):
                    out[a : a + k].copy_(slots[j, :k])

    def scatter(self, tensor: torch.Tensor, inputs: Sequence[torch.Tensor] | None, src: int) -> None:
        """Rank ``src`` stores piece ``j`` of every input in slot ``j``; rank ``j`` reads its own slot."""
        flat, back = _flat(tensor)
        data = _bytes(flat)
        for a in range(0, max(data.numel(), 1), self.slot):
            k = min(self.slot, data.numel() - a)
            step, slots = self._next()
            if self.rank == src and inputs is not None and k > 0:
                for j, inp in enumerate(inputs):
                    slots[j, :k].copy_(inp[a : a + k])
            self._sync(step)
            if k > 0:
                data[a : a + k].copy_(slots[self.rank, :k])
        if back:
            back()

    def reduce_scatter(self, output: torch.Tensor, flat_input: torch.Tensor, op: ReduceOp) -> None:
        """``flat_input`` holds ``n`` blocks of ``output``'s size; block ``r`` reduced over ranks lands in rank
        ``r``'s ``output``. Each step carries the same element range of all ``n`` blocks."""
        out, back = _flat(output)
        inp, _ = _flat(flat_input)
        m, n, esize = out.numel(), self.n, out.element_size()
        blocks = inp.view(n, m) if m else None
        per = self._elems_per_chunk(out, parts=n)
        for a in range(0, max(m, 1), per):
            b = min(m, a + per)
            c = b - a
            step, slots = self._next()
            if c and blocks is not None:
                mine = slots[self.rank, : n * c * esize].view(out.dtype).view(n, c)
                mine.copy_(blocks[:, a:b])
            self._sync(step)
            if c:
                rows = slots[:, : n * c * esize].view(out.dtype).view(n, n, c)[:, self.rank, :]
                reduce_rows(rows, op, out[a:b])
        if back:
            back()

    def all_to_all(self, outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor]) -> None:
        """``inputs[j]`` goes to rank ``j``, arriving in its ``outputs[rank]``; byte views, any sizes. Each step
        carries the same byte range of every pair's message through ``n`` sub-slots of a slot."""
        n = self.n
        sub = self.slot // n // 64 * 64
        longest = max([t.numel() for t in inputs] + [t.numel() for t in outputs] + [0])
        for a in range(0, max(longest, 1), sub):
            step, slots = self._next()
            for j, inp in enumerate(inputs):
                k = min(sub, inp.numel() - a)
                if k > 0:
                    slots[self.rank, j * sub : j * sub + k].copy_(inp[a : a + k])
            self._sync(step)
            for i, out in enumerate(outputs):
                k = min(sub, out.numel() - a)
                if k > 0:
                    out[a : a + k].copy_(slots[i, self.rank * sub : self.rank * sub + k])
