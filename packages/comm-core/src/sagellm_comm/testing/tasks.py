"""What each rank runs for the conformance suite (module-level functions, so the launcher can send them).

Every task takes the backend name first, gets this rank's initialized backend (one per rank process, reused
across tasks), performs the op and checks its own result against ``reference``; a mismatch raises
AssertionError, which the launcher reports with the rank's traceback. Every tensor a task hands the backend lives on
``comm.device`` (the CPU, or this rank's one accelerator); references are computed on the CPU.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from sagellm_protocol import ReduceOp

from sagellm_comm.backend import CommBackend, P2POp
from sagellm_comm.errors import CommError, ErrorCode
from sagellm_comm.registry import get_comm_backend
from sagellm_comm.testing.reference import (
    DTYPES,
    check_equal,
    make_input,
    reduce_reference,
    sizes_for,
    tolerance,
)

_BACKENDS: dict[str, CommBackend] = {}
# how long a rank waits for a peer or a handle; SAGELLM_COMM_CONFORMANCE_WAIT_S shortens it (e.g. in tests that
# expect a backend to fail a check)
WAIT_S = float(os.environ.get("SAGELLM_COMM_CONFORMANCE_WAIT_S") or 60.0)


def backend_for(name: str) -> CommBackend:
    """This rank's initialized backend ``name`` (initialized from the launcher's torchrun-style environment)."""
    comm = _BACKENDS.get(name)
    if comm is None or not comm.is_initialized:
        comm = get_comm_backend(name)
        comm.init_process_group()
        _BACKENDS[name] = comm
    return comm


def _dev(comm: CommBackend) -> torch.device:
    return comm.device


def _sizes(dtype: torch.dtype, sizes: list[int] | None) -> list[int]:
    return sizes if sizes is not None else sizes_for(dtype)


def expect_error(code: ErrorCode, fn: Any, *args: Any, **kwargs: Any) -> str:
    try:
        fn(*args, **kwargs)
    except CommError as exc:
        if exc.code is not code:
            raise AssertionError(f"expected {code.value}, got {exc.code.value}: {exc}") from exc
        if not exc.message:
            raise AssertionError("error has no message") from exc
        return exc.message
    raise AssertionError(f"expected an error with code {code.value}, but the call succeeded")


# --------------------------------------------------------------------------------------------------------------
def world(name: str) -> tuple[int, int]:
    comm = backend_for(name)
    return comm.get_rank(), comm.get_world_size()


def all_reduce(name: str, dtype: str, op: str, sizes: list[int] | None = None, async_op: bool = False) -> int:
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    dt, rop = DTYPES[dtype], ReduceOp(op)
    checked = 0
    for numel in _sizes(dt, sizes):
        t = make_input(rank, numel, dt, rop, device=_dev(comm))
        want = reduce_reference([make_input(r, numel, dt, rop) for r in range(n)], rop, dt)
        out = comm.all_reduce(t, op, async_op=async_op)
        if async_op:
            assert out.wait(WAIT_S) is True and out.is_completed(), "async all_reduce handle not completed"
            out = out.result()
        assert out is t, "all_reduce must work in place and return the input tensor"
        check_equal(f"all_reduce {op} {dtype} n={numel}", t, want, **tolerance(dt, rop))
        checked += 1
    return checked


def all_reduce_non_contiguous(name: str, declared: bool) -> str:
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    base = torch.full((64, 4), -1.0, device=_dev(comm))
    base[:, 1] = make_input(rank, 64, torch.float32, device=_dev(comm))
    view = base[:, 1]
    assert not view.is_contiguous()
    if not declared:
        expect_error(ErrorCode.INVALID_ARGUMENT, comm.all_reduce, view)
        return "rejected"
    comm.all_reduce(view)
    want = reduce_reference([make_input(r, 64, torch.float32) for r in range(n)], ReduceOp.SUM, torch.float32)
    check_equal("non-contiguous all_reduce", base[:, 1], want)
    check_equal("non-contiguous neighbours untouched", base[:, 0], torch.full((64,), -1.0))
    return "correct"


def all_gather(name: str, dtype: str, sizes: list[int] | None = None) -> int:
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    dt = DTYPES[dtype]
    for numel in _sizes(dt, sizes):
        numel = min(numel, (4 << 20) // (dt.itemsize * n))  # keep the gathered total at 4 MiB
        t = make_input(rank, numel, dt, device=_dev(comm))
        outs = comm.all_gather(t)
        assert isinstance(outs, list) and len(outs) == n
        for r in range(n):
            check_equal(f"all_gather {dtype} n={numel} from rank {r}", outs[r], make_input(r, numel, dt))
        given = [torch.empty_like(t) for _ in range(n)]
        comm.all_gather(t, output=given)
        for r in range(n):
            check_equal(f"all_gather(output=) {dtype} from rank {r}", given[r], make_input(r, numel, dt))
    return n


def all_gather_into_tensor(name: str, dtype: str, in_place: bool) -> int:
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    dt = DTYPES[dtype]
    for numel in (0, 1, 1021, (1 << 20) // dt.itemsize):
        want = torch.cat([make_input(r, numel, dt) for r in range(n)])
        out = torch.zeros(n * numel, dtype=dt, device=_dev(comm))
        if in_place:  # the input is this rank's slot of the output, as NCCL's in-place all_gather
            inp = out[rank * numel : (rank + 1) * numel]
            inp.copy_(make_input(rank, numel, dt))
        else:
            inp = make_input(rank, numel, dt, device=_dev(comm))
        comm.all_gather_into_tensor(out, inp)
        check_equal(f"all_gather_into_tensor in_place={in_place} {dtype} n={numel}", out, want)
    return n


def reduce_scatter(name: str, dtype: str, op: str, list_input: bool) -> int:
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    dt, rop = DTYPES[dtype], ReduceOp(op)
    for chunk in (0, 1, 1021, (1 << 20) // dt.itemsize // n):
        full = [make_input(r, chunk * n, dt, rop) for r in range(n)]
        want = reduce_reference(full, rop, dt)[rank * chunk : (rank + 1) * chunk]
        out = torch.empty(chunk, dtype=dt, device=_dev(comm))
        src = full[rank].to(_dev(comm))
        comm.reduce_scatter(out, list(src.split(chunk)) if list_input and chunk else src, op)
        check_equal(f"reduce_scatter {op} {dtype} chunk={chunk}", out, want, **tolerance(dt, rop))
    return n


def broadcast(name: str, dtype: str, async_op: bool = False) -> int:
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    dt = DTYPES[dtype]
    for root in range(n):
        for numel in _sizes(dt, None):
            t = make_input(rank, numel, dt, seed=root, device=_dev(comm))
            res = comm.broadcast(t, root, async_op=async_op)
            if async_op:
                assert res.wait(WAIT_S) and res.is_completed()
                res = res.result()
            assert res is t
            check_equal(f"broadcast root={root} {dtype} n={numel}", t, make_input(root, numel, dt, seed=root))
    return n


def reduce(name: str, dtype: str, op: str) -> int:
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    dt, rop = DTYPES[dtype], ReduceOp(op)
    for root in range(n):
        for numel in (0, 1, 1021, (1 << 20) // dt.itemsize):
            t = make_input(rank, numel, dt, rop, device=_dev(comm))
            comm.reduce(t, root, op)
            if rank == root:
                want = reduce_reference([make_input(r, numel, dt, rop) for r in range(n)], rop, dt)
                check_equal(f"reduce {op} root={root} {dtype} n={numel}", t, want, **tolerance(dt, rop))
    return n


def gather(name: str, dtype: str) -> int:
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    dt = DTYPES[dtype]
    for root in range(n):
        for numel in (0, 1, 1021, 65536):
            res = comm.gather(make_input(rank, numel, dt, device=_dev(comm)), dst_rank=root)
            if rank == root:
                assert isinstance(res, list) and len(res) == n
                for r in range(n):
                    check_equal(f"gather root={root} from {r} n={numel}", res[r], make_input(r, numel, dt))
            else:
                assert res is None, "gather returns None on non-root ranks"
    return n


def scatter(name: str, dtype: str) -> int:
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    dt = DTYPES[dtype]
    for root in range(n):
        for numel in (0, 1, 1021, 65536):
            chunks = (
                [make_input(r, numel, dt, seed=root, device=_dev(comm)) for r in range(n)] if rank == root else None
            )
            out = torch.zeros(numel, dtype=dt, device=_dev(comm))
            comm.scatter(out, chunks, src_rank=root)
            check_equal(f"scatter root={root} n={numel}", out, make_input(rank, numel, dt, seed=root))
    return n


def all_to_all(name: str, dtype: str, list_form: bool) -> int:
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    dt = DTYPES[dtype]
    for chunk in (0, 1, 1021, (1 << 20) // dt.itemsize // n):
        # rank r's chunk j is make_input(r * n + j, chunk): rank j must end with chunks (i * n + j) for every i
        mine = [make_input(rank * n + j, chunk, dt, device=_dev(comm)) for j in range(n)]
        want = torch.cat([make_input(i * n + rank, chunk, dt) for i in range(n)])
        if list_form:
            outs = [torch.empty(chunk, dtype=dt, device=_dev(comm)) for _ in range(n)]
            comm.all_to_all(outs, mine)
            got = torch.cat(outs)
        else:
            got = torch.empty(chunk * n, dtype=dt, device=_dev(comm))
            comm.all_to_all(got, torch.cat(mine))
        check_equal(f"all_to_all list={list_form} {dtype} chunk={chunk}", got, want)
    return n


def barrier(name: str) -> int:
    comm = backend_for(name)
    comm.barrier()
    comm.barrier(timeout=WAIT_S)
    if comm.capabilities.async_ops:  # a backend that declares no async ops is refused async_op=True by the core
        work = comm.barrier(async_op=True)
        assert work.wait(WAIT_S) and work.is_completed()
    return comm.get_rank()


def p2p_ordering(name: str, messages: int = 8) -> int:
    """Rank 0 sends ``messages`` tensors to rank 1 on one tag; they must arrive in order. Also KV-style
    (k then v, per layer) with blocking send/recv."""
    comm = backend_for(name)
    rank, dev = comm.get_rank(), _dev(comm)
    if rank == 0:
        works = [comm.isend(torch.full((1021,), float(i), device=dev), 1) for i in range(messages)]
        for w in works:
            assert w.wait(WAIT_S)
        for layer in range(3):
            comm.send(torch.full((33,), 100.0 + layer, device=dev), 1)
            comm.send(torch.full((33,), 200.0 + layer, device=dev), 1)
    elif rank == 1:
        for i in range(messages):
            buf = torch.empty(1021, device=dev)
            comm.recv(buf, 0)
            check_equal(f"message {i} in order", buf, torch.full((1021,), float(i)))
        for layer in range(3):
            k, v = torch.empty(33, device=dev), torch.empty(33, device=dev)
            comm.recv(k, 0)
            comm.recv(v, 0)
            check_equal(f"k of layer {layer}", k, torch.full((33,), 100.0 + layer))
            check_equal(f"v of layer {layer}", v, torch.full((33,), 200.0 + layer))
    return rank


def p2p_tags(name: str) -> int:
    """Two messages with different tags, received in the opposite order: each lands by its tag."""
    comm = backend_for(name)
    rank, dev = comm.get_rank(), _dev(comm)
    if rank == 0:
        w1 = comm.isend(torch.full((17,), 1.0, device=dev), 1, tag=1)
        w2 = comm.isend(torch.full((17,), 2.0, device=dev), 1, tag=2)
        assert w1.wait(WAIT_S) and w2.wait(WAIT_S)
    elif rank == 1:
        second, first = torch.empty(17, device=dev), torch.empty(17, device=dev)
        r2 = comm.irecv(second, 0, tag=2)
        r1 = comm.irecv(first, 0, tag=1)
        assert r2.wait(WAIT_S) and r1.wait(WAIT_S)
        check_equal("tag 2 payload", second, torch.full((17,), 2.0))
        check_equal("tag 1 payload", first, torch.full((17,), 1.0))
    return rank


def p2p_all_pairs(name: str, dtype: str) -> int:
    """Every ordered pair exchanges a message with blocking calls, lower rank sending first."""
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    dt = DTYPES[dtype]
    for a in range(n):
        for b in range(a + 1, n):
            if rank not in (a, b):
                continue
            peer = b if rank == a else a
            out = make_input(rank * 100 + peer, 513, dt, device=_dev(comm))
            buf = torch.empty(513, dtype=dt, device=_dev(comm))
            if rank == a:
                comm.send(out, peer)
                comm.recv(buf, peer)
            else:
                comm.recv(buf, peer)
                comm.send(out, peer)
            check_equal(f"p2p {peer}->{rank}", buf, make_input(peer * 100 + rank, 513, dt))
    return rank


def batch_ring(name: str) -> int:
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    right, left = (rank + 1) % n, (rank - 1) % n
    out = make_input(rank, 4099, torch.float32, device=_dev(comm))
    buf = torch.empty(4099, device=_dev(comm))
    works = comm.batch_isend_irecv([P2POp("isend", out, right), P2POp("irecv", buf, left)])
    for w in works:
        assert w.wait(WAIT_S)
    check_equal("ring neighbour payload", buf, make_input(left, 4099, torch.float32))
    return rank


def async_mix(name: str) -> int:
    """Several async collectives in flight at once, then waited in reverse order."""
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    a = make_input(rank, 4096, torch.float32, device=_dev(comm))
    b = make_input(rank, 1000, torch.int64, device=_dev(comm))
    w1 = comm.all_reduce(a, "sum", async_op=True)
    w2 = comm.all_gather(b, async_op=True)
    w3 = comm.barrier(async_op=True)
    assert w3.wait(WAIT_S)
    gathered = w2.result(WAIT_S)
    assert w1.wait(WAIT_S) and w1.is_completed() and w1.wait(WAIT_S)  # waiting twice is fine
    check_equal(
        "async all_reduce",
        a,
        reduce_reference([make_input(r, 4096, torch.float32) for r in range(n)], ReduceOp.SUM, torch.float32),
    )
    for r in range(n):
        check_equal(f"async all_gather from {r}", gathered[r], make_input(r, 1000, torch.int64))
    return rank


def sub_groups(name: str) -> dict[str, Any]:
    """Two disjoint groups (evens; odds given in reverse order) reduce at the same time; each sees only its
    members, and group ranks follow ascending global rank whatever order the ranks were given in."""
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    evens = list(range(0, n, 2))
    odds_desc = list(range(n - 1 if (n - 1) % 2 else n - 2, 0, -2))
    g_even = comm.create_group(evens)
    g_odd = comm.create_group(odds_desc) if odds_desc else None
    mine, other = (g_even, g_odd) if rank % 2 == 0 else (g_odd, g_even)
    assert mine is not None  # an odd rank exists only where odds_desc is not empty
    members = evens if rank % 2 == 0 else sorted(odds_desc)
    dev = _dev(comm)
    t = torch.full((1021,), float(rank + 1), device=dev)
    mine.all_reduce(t)
    check_equal("sub-group all_reduce sums members only", t, torch.full((1021,), float(sum(r + 1 for r in members))))
    assert comm.get_rank(mine) == members.index(rank) and comm.get_world_size(mine) == len(members)
    # roots are group ranks: group rank len-1 is the highest global rank of the group
    b = torch.full((7,), float(rank), device=dev)
    comm.broadcast(b, len(members) - 1, group=mine)
    check_equal("sub-group broadcast from group rank", b, torch.full((7,), float(members[-1])))
    outs = comm.all_gather(torch.tensor([rank], device=dev), group=mine)
    assert [int(o) for o in outs] == members, f"sub-group all_gather order {outs} != {members}"
    if other is not None:
        assert comm.get_rank(other) == -1 and not other.is_member
        expect_error(ErrorCode.COMM_RANK_MISMATCH, comm.all_reduce, torch.ones(3, device=dev), "sum", other)
    assert mine.info().ranks == members
    comm.barrier()
    return {"rank": rank, "members": members}


def bad_input(name: str) -> list[str]:
    """Each bad call fails before any rank starts an op (so no rank waits), and the world stays usable."""
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    caps, dev = comm.capabilities, _dev(comm)
    seen = []
    t = torch.ones(8, device=dev)

    def code(op: str, declared: ErrorCode) -> ErrorCode:
        """The op's own check where it is declared; the core refuses an undeclared op before any argument check."""
        return declared if op in caps.ops else ErrorCode.COMM_BACKEND_NOT_SUPPORTED

    seen.append(expect_error(code("all_reduce", ErrorCode.INVALID_ARGUMENT), comm.all_reduce, t, "summ"))
    seen.append(expect_error(code("broadcast", ErrorCode.COMM_RANK_MISMATCH), comm.broadcast, t, n))
    seen.append(expect_error(code("broadcast", ErrorCode.COMM_RANK_MISMATCH), comm.broadcast, t, -1))
    seen.append(expect_error(code("send", ErrorCode.COMM_RANK_MISMATCH), comm.send, t, rank))
    seen.append(expect_error(code("recv", ErrorCode.COMM_RANK_MISMATCH), comm.recv, t, n + 3))
    seen.append(expect_error(code("all_reduce", ErrorCode.INVALID_ARGUMENT), comm.all_reduce, [1.0, 2.0]))
    # create_group checks its ranks first, also where the backend makes no sub-groups
    seen.append(expect_error(ErrorCode.INVALID_ARGUMENT, comm.create_group, [0, 0]))
    seen.append(expect_error(ErrorCode.COMM_RANK_MISMATCH, comm.create_group, [0, n]))
    seen.append(
        expect_error(
            code("all_gather_into_tensor", ErrorCode.INVALID_ARGUMENT),
            comm.all_gather_into_tensor,
            torch.empty(n * 8 + 1, device=dev),
            t,
        )
    )
    seen.append(
        expect_error(
            code("reduce_scatter", ErrorCode.INVALID_ARGUMENT),
            comm.reduce_scatter,
            torch.empty(3, device=dev),
            torch.empty(3 * n + 1, device=dev),
        )
    )
    # a (reduce op, dtype) pair the backend does not declare
    for rop in ReduceOp:
        undeclared = [
            d for d in (torch.bool, torch.float32, torch.int32) if d in caps.dtypes and not caps.supports_reduce(rop, d)
        ]
        if undeclared:
            msg = expect_error(
                ErrorCode.COMM_BACKEND_NOT_SUPPORTED,
                comm.all_reduce,
                torch.zeros(4, dtype=undeclared[0], device=dev),
                rop,
            )
            assert name in msg and "all_reduce" in msg, f"error must name backend and op: {msg}"
            seen.append(msg)
            break
    fresh = get_comm_backend(name)
    seen.append(expect_error(ErrorCode.COMM_GROUP_INVALID, fresh.all_reduce, t))
    # the world is still usable
    ok = torch.full((5,), 1.0, device=dev)
    comm.all_reduce(ok)
    check_equal("all_reduce after bad input", ok, torch.full((5,), float(n)))
    return seen


# --------------------------------------------------------------------------------------------------------------
# asynchrony and streams
# --------------------------------------------------------------------------------------------------------------
_ROUNDS: dict[str, int] = {}


def _round(label: str) -> int:
    """How many times this rank ran ``label`` (the same on every rank: tasks run on all ranks in the same order)."""
    _ROUNDS[label] = _ROUNDS.get(label, 0) + 1
    return _ROUNDS[label]


PROGRESS_NUMEL = 1 << 20  # 4 MiB of float32: many engine steps, so a single poll cannot finish it


def concurrent_progress(name: str, wait_s: float = WAIT_S) -> dict[str, Any]:
    """The ``concurrent_progress`` claim, checked causally rather than by timing.

    Rank 0 submits ``all_reduce(async_op=True)`` and announces it on the side channel, then never touches the
    backend: it only waits on the side channel until every other rank reports that its own *blocking* all_reduce
    of the same op finished. Those blocking calls need rank 0's contribution, so they can only finish if rank 0's op
    progressed while rank 0 was busy elsewhere. If the async call does not return at once (it runs the op inside
    the call), the others never hear "submitted" and rank 0's call cannot finish either: both are reported.
    """
    comm = backend_for(name)
    rank, n = comm.get_rank(), comm.get_world_size()
    channel = comm.side_channel.scope(f"conformance/progress/{_round('progress')}", timeout_s=wait_s)
    t = make_input(rank, PROGRESS_NUMEL, torch.float32, device=_dev(comm))
    want = reduce_reference(
        [make_input(r, PROGRESS_NUMEL, torch.float32) for r in range(n)], ReduceOp.SUM, torch.float32
    )
    others = [f"rank {r}" for r in range(1, n)]
    if rank == 0:
        work = comm.all_reduce(t, "sum", async_op=True)
        channel.set("submitted", "1")
        try:
            channel.wait(
                [f"done/{r}" for r in range(1, n)],
                owners=others,
                what=f"finish their blocking all_reduce while rank 0 did not call the backend (waited "
                f"{wait_s:.0f}s): {name} declares concurrent_progress but its async op did not progress "
                "on its own",
            )
        finally:
            channel.set("released", "1")  # whatever happened, let the others leave
        assert work.wait(wait_s) and work.is_completed()
    else:
        channel.get(
            "submitted",
            owner="rank 0",
            what=f"return from all_reduce(async_op=True) within {wait_s:.0f}s: the call blocked until the op "
            "completed instead of returning at once",
        )
        comm.all_reduce(t, "sum")
        channel.set(f"done/{rank}", "1")
        channel.get("released", owner="rank 0", what="finish the check")
    check_equal("all_reduce completed in the background", t, want)
    return {"rank": rank}


def _device_module(dev: torch.device) -> Any:
    return torch.get_device_module(dev.type)


def _busy(dev: torch.device, rounds: int = 24) -> torch.Tensor:
    """Queue a few hundred milliseconds of work on the current stream; returns a value depending on all of it."""
    a = torch.randn(2048, 2048, device=dev)
    for _ in range(rounds):
        a = torch.tanh(a @ a) * 0.5
    return a.sum()


def stream_order(name: str) -> int:
    """Stream semantics on an accelerator (docs/streams.md), on a side stream made current:

    1. a collective starts after the work queued before it on the caller's current stream (the input is written at
       the end of a long queue of kernels: a collective that ignored the current stream would read the old data);
    2. after ``Work.wait()`` work queued on the current stream sees the result (the stream waited for the op);
    3. ``Work.synchronize()`` returns only once the current stream has drained up to the op's end.
    """
    comm = backend_for(name)
    rank, n, dev = comm.get_rank(), comm.get_world_size(), _dev(comm)
    mod = _device_module(dev)
    side = mod.Stream(dev)
    total = float(sum(r + 1 for r in range(n)))
    with mod.stream(side):
        x = torch.zeros(1 << 20, device=dev)
        gate = _busy(dev)
        x.add_(float(rank + 1) + gate * 0.0)  # written after the busy queue
        comm.all_reduce(x)
        y = x * 1.0  # queued after a synchronous collective
        work = comm.all_reduce(y, async_op=True)
        work.wait(WAIT_S)
        z = y * 1.0  # queued after wait(): must see the second reduction
        w2 = comm.all_reduce(z, async_op=True)
        w2.synchronize(WAIT_S)
        drained = mod.current_stream(dev).query()  # nothing queued since: synchronize() waited for all of it
    mod.synchronize(dev)
    assert drained, "Work.synchronize() returned before the current stream reached the end of the op"
    check_equal("collective ordered after the current stream's earlier work", x, torch.full((1 << 20,), total))
    check_equal("work after wait() sees the result", y, torch.full((1 << 20,), total * n))
    check_equal("work after synchronize() sees the result", z, torch.full((1 << 20,), total * n * n))
    return rank


def mismatch_outcomes(comm: Any, cases: dict[str, Any], names: Any) -> list[str]:
    """Run ``cases`` (field -> a call the ranks make mismatched); each must raise ``COMM_RANK_MISMATCH`` whose message
    contains ``names(field)``, and a matching all_reduce right after must be right (the group stays usable). One
    line per field: ``"<field>: mismatch"`` when all of that holds."""
    rank, n = comm.get_rank(), comm.get_world_size()
    seen = []
    for field, call in cases.items():
        try:
            call()
            seen.append(f"{field}: no error")
        except CommError as exc:
            ok = exc.code is ErrorCode.COMM_RANK_MISMATCH and names(field) in exc.message
            seen.append(f"{field}: {'mismatch' if ok else exc.code.value + ' ' + exc.message[:200]}")
        t = torch.full((1000,), float(rank + 1))
        comm.all_reduce(t)
        if not torch.equal(t, torch.full((1000,), float(n * (n + 1) // 2))):
            seen.append(f"{field}: the group gave a wrong answer afterwards")
    return seen


def debug_mismatches(name: str) -> list[str]:
    """Debug mode (``SAGELLM_COMM_DEBUG=detail``, read at init): collectives the ranks call mismatched (element
    count, dtype, op, root, reduce op; blocking and async) raise ``COMM_RANK_MISMATCH`` on every rank, listing every
    rank's call, before the engine sees them; the group stays usable. A second backend instance of this rank
    (the pool's own stays as it is)."""
    from sagellm_comm.debug import DEBUG_ENV

    first = backend_for(name)
    caps = first.capabilities
    os.environ[DEBUG_ENV] = "detail"
    comm = get_comm_backend(name)
    try:
        comm.init_process_group()
    finally:
        del os.environ[DEBUG_ENV]
    dev = comm.device
    odd = comm.get_rank() == comm.get_world_size() - 1  # the last rank is the odd one out
    other_dtype = next(
        (d for d in (torch.int32, torch.float64, torch.bfloat16, torch.float16, torch.int64) if d in caps.dtypes), None
    )
    cases: dict[str, Any] = {
        "numel": lambda: comm.all_reduce(torch.ones(8 if odd else 4, device=dev)),
        "root": lambda: comm.broadcast(torch.ones(4, device=dev), 1 if odd else 0),
        "op": lambda: (
            comm.broadcast(torch.ones(4, device=dev), 0) if odd else comm.all_reduce(torch.ones(4, device=dev))
        ),
    }
    if other_dtype is not None:
        cases["dtype"] = lambda: comm.all_reduce(torch.ones(4, device=dev, dtype=other_dtype if odd else None))
    if caps.supports_reduce(ReduceOp.MAX, torch.float32):
        cases["reduce op"] = lambda: comm.all_reduce(torch.ones(4, device=dev), "max" if odd else "sum")
    if caps.async_ops and "all_gather" in caps.ops:
        cases["async numel"] = lambda: comm.all_gather(torch.ones(3 if odd else 5, device=dev), async_op=True).wait(
            WAIT_S
        )
    try:
        return mismatch_outcomes(comm, cases, lambda field: "rank 0:")  # debug mode lists every rank's call
    finally:
        comm.destroy()
