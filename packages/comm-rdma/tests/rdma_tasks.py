"""Rank tasks of the rdma tests (run by the launcher's RankPool, one process per rank)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import torch

from sagellm_comm import P2POp, get_comm_backend
from sagellm_comm.errors import CommError, ErrorCode
from sagellm_comm.testing.tasks import backend_for

WAIT_S = 60.0
_RUNS = [0]


def _pattern(seed: int, nbytes: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (nbytes,), dtype=torch.uint8, generator=g)


def _code(fn: Any, *args: Any, **kwargs: Any) -> str:
    try:
        fn(*args, **kwargs)
    except CommError as exc:
        assert exc.message, "an error without a message"
        return exc.code.value
    return "no error"


def engine_round_trip() -> dict[str, Any]:
    """Register, exchange descriptors, batched writes and reads with notifications, bytes checked both ways."""
    comm = backend_for("rdma")
    eng = comm.transfer_engine
    rank, peer = comm.get_rank(), 1 - comm.get_rank()
    base = eng.registrations
    blocks, bs = 16, 4096
    mine = _pattern(rank, blocks * bs)
    inbox = torch.zeros(blocks * bs, dtype=torch.uint8)
    out_r = eng.register(mine)
    in_r = eng.register(inbox)
    table = eng.exchange([out_r, in_r])
    theirs_out, theirs_in = table[peer]
    # write my blocks into the peer's inbox in reverse block order
    spans = [(out_r, i * bs, theirs_in, (blocks - 1 - i) * bs, bs) for i in range(blocks)]
    eng.write(spans, notify=b"written").wait(WAIT_S)
    assert eng.wait_notification(peer, b"written", timeout=WAIT_S) == b"written"
    want = _pattern(peer, blocks * bs).view(blocks, bs).flip(0).reshape(-1)
    assert torch.equal(inbox, want), "written blocks landed wrong"
    # read the peer's first half back into my inbox
    inbox.zero_()
    h = eng.read([(in_r, 0, theirs_out, 0, blocks * bs // 2)])
    h.wait(WAIT_S)
    assert torch.equal(inbox[: blocks * bs // 2], _pattern(peer, blocks * bs)[: blocks * bs // 2])
    assert not inbox[blocks * bs // 2 :].any(), "a read wrote past its length"
    eng.notify(peer, b"read done")
    eng.wait_notification(peer, b"read done", timeout=WAIT_S)
    transport = eng.transport(peer)
    eng.deregister(out_r)
    eng.deregister(in_r)
    assert eng.registrations == base
    return {"transport": transport, "registrations": eng.registrations}


def engine_errors() -> list[str]:
    """Registering twice, out-of-bounds spans, bad entries: clear errors, nothing sent, nothing corrupted."""
    comm = backend_for("rdma")
    eng = comm.transfer_engine
    rank, peer = comm.get_rank(), 1 - comm.get_rank()
    buf = torch.full((1024,), rank + 1, dtype=torch.uint8)
    region = eng.register(buf)
    seen = [
        "twice: " + _code(eng.register, buf),
        "overlap: " + _code(eng.register, buf[512:]),
    ]
    (remote,) = eng.exchange([region])[peer]
    seen += [
        "remote oob: " + _code(eng.write, [(region, 0, remote, 1000, 100)]),
        "local oob: " + _code(eng.write, [(region, 1000, remote, 0, 100)]),
        "zero length: " + _code(eng.write, [(region, 0, remote, 0, 0)]),
        "negative: " + _code(eng.write, [(region, -1, remote, 0, 10)]),
        "not a span: " + _code(eng.write, [(region, 0, 10)]),
        "empty: " + _code(eng.write, []),
        "to myself: " + _code(eng.write, [(region, 0, eng.exchange([region])[rank][0], 0, 10)]),
    ]
    eng.channel.exchange("errors-done", b"1", rank, 2)
    # nothing was written by the refused transfers
    assert torch.equal(buf, torch.full((1024,), rank + 1, dtype=torch.uint8)), "a refused transfer wrote bytes"
    eng.deregister(region)
    seen.append("deregister twice: " + _code(eng.deregister, region))
    seen.append("use deregistered: " + _code(eng.write, [(region, 0, remote, 0, 10)]))
    eng.channel.exchange("errors-end", b"1", rank, 2)
    return seen


def kv_cache_engine() -> dict[str, Any]:
    """sagellm-kv-cache's real KVTransferEngine on this backend: a KV tensor and a bytes payload, bytes checked."""
    from sagellm_kv_cache import KVHandle
    from sagellm_kv_cache.transfer import CommTransferBackendAdapter, KVTransferEngine

    comm = backend_for("rdma")
    rank = comm.get_rank()
    engine = KVTransferEngine(comm)
    adapter_engine = KVTransferEngine(CommTransferBackendAdapter(comm, interconnect="rdma"))
    handle = KVHandle.create(num_tokens=64, device="cpu")
    kv = torch.arange(2 * 64 * 128, dtype=torch.float32).reshape(2, 64, 128) * (rank + 1)
    if rank == 0:
        engine.transfer_kv_handle(handle, 0, 1, kv)
        adapter_engine.transfer_kv_handle(handle, 0, 1, kv + 7)
        return {"rank": 0}
    got = torch.zeros(2, 64, 128, dtype=torch.float32)
    engine.transfer_kv_handle(handle, 0, 1, got)
    assert torch.equal(got, torch.arange(2 * 64 * 128, dtype=torch.float32).reshape(2, 64, 128)), "KV bytes differ"
    got2 = torch.zeros(2, 64, 128, dtype=torch.float32)
    adapter_engine.transfer_kv_handle(handle, 0, 1, got2)
    assert torch.equal(got2, torch.arange(2 * 64 * 128, dtype=torch.float32).reshape(2, 64, 128) + 7)
    return {"rank": 1, "completed": engine.get_completed_count()}


def killed_peer(mode: str, nbytes: int = 64 << 20) -> dict[str, Any]:
    """Rank 1's engine lives in a victim process that exits without a goodbye (``os._exit``): in ``"batch"`` mode
    while rank 0 writes batches of 64 blocks into it, in ``"send"`` mode before rank 0's blocking send. Rank 0 must
    get COMM_P2P_FAILED or COMM_TIMEOUT within its timeout (10 s) and release its registrations."""
    if int(os.environ["RANK"]) == 1:
        here = os.path.dirname(os.path.abspath(__file__))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
        code = f"import rdma_tasks; rdma_tasks.victim({mode!r}, {nbytes})"
        return {"victim_exit": subprocess.run([sys.executable, "-c", code], env=env, timeout=120).returncode}
    comm = get_comm_backend("rdma")
    comm.init_process_group(timeout=10.0)
    eng = comm.transfer_engine
    base = eng.registrations
    codes: list[str] = []
    t0 = time.monotonic()
    if mode == "batch":
        buf = torch.ones(nbytes, dtype=torch.uint8)
        region = eng.register(buf)
        remote = eng.exchange([region])[1][0]
        eng.notify(1, b"go")
        bs = nbytes // 64
        for _ in range(500):  # keep writing until the dead peer shows up
            try:
                eng.write([(region, i * bs, remote, i * bs, bs) for i in range(64)]).wait()
            except CommError as exc:
                codes.append(exc.code.value)
                break
        eng.deregister(region)
    else:
        eng.connect(1)  # both endpoints exist before the victim dies
        eng.channel.exchange("connected", b"1", 0, 2)
        time.sleep(0.2)
        codes.append(_code(comm.send, torch.ones(1000), 1))
    took = time.monotonic() - t0
    leaked = eng.registrations - base
    comm.destroy()
    return {"codes": codes, "seconds": round(took, 3), "leaked": leaked}


def victim(mode: str, nbytes: int) -> None:
    comm = get_comm_backend("rdma")
    comm.init_process_group(timeout=10.0)
    eng = comm.transfer_engine
    if mode == "batch":
        buf = torch.zeros(nbytes, dtype=torch.uint8)
        region = eng.register(buf)
        eng.exchange([region])
        eng.wait_notification(0, b"go", timeout=WAIT_S)
        time.sleep(0.05)
    else:
        eng.connect(0)
        eng.channel.exchange("connected", b"1", 1, 2)
    os._exit(0)


def p2p_mismatch() -> list[str]:
    """A receive of another dtype or size: COMM_RANK_MISMATCH on both sides, the lane stays usable."""
    comm = backend_for("rdma")
    rank = comm.get_rank()
    seen = []
    if rank == 0:
        seen.append("dtype: " + _code(comm.send, torch.ones(8, dtype=torch.float32), 1))
        seen.append("size: " + _code(comm.send, torch.ones(8, dtype=torch.float32), 1))
        comm.send(torch.full((8,), 5.0), 1)
    else:
        seen.append("dtype: " + _code(comm.recv, torch.empty(8, dtype=torch.int32), 0))
        seen.append("size: " + _code(comm.recv, torch.empty(9, dtype=torch.float32), 0))
        buf = torch.empty(8)
        comm.recv(buf, 0)
        assert torch.equal(buf, torch.full((8,), 5.0))
        seen.append("after: ok")
    return seen


def p2p_sizes() -> int:
    """Large, non-contiguous, zero-size and many small messages."""
    comm = backend_for("rdma")
    rank = comm.get_rank()
    if rank == 0:
        comm.send(torch.arange(3 << 20, dtype=torch.float32), 1)
        comm.send(torch.arange(64, dtype=torch.int64).reshape(8, 8).t(), 1)
        comm.send(torch.empty(0), 1)
        works = [comm.isend(torch.full((3,), float(i)), 1, tag=5) for i in range(50)]
        for w in works:
            w.wait(WAIT_S)
    elif rank == 1:
        big = torch.empty(3 << 20)
        comm.recv(big, 0)
        assert torch.equal(big, torch.arange(3 << 20, dtype=torch.float32))
        nc = torch.empty(8, 8, dtype=torch.int64).t()
        comm.recv(nc, 0)
        assert torch.equal(nc, torch.arange(64).reshape(8, 8).t())
        comm.recv(torch.empty(0), 0)
        for i in range(50):
            b = torch.empty(3)
            comm.recv(b, 0, tag=5)
            assert torch.equal(b, torch.full((3,), float(i))), (i, b)
    return rank


def reconnect_after_restart() -> dict[str, Any]:
    """Rank 1 closes its engine and starts a new one (a restarted peer publishes a new agent): rank 0's old
    descriptors are refused with a clear error, and after a new lookup transfers work again. Both ranks use engines
    of their own next to the backend's, on a namespace of the side channel."""
    from sagellm_comm_rdma.engine import TransferEngine

    comm = backend_for("rdma")
    rank = comm.get_rank()
    _RUNS[0] += 1  # both ranks run the task the same number of times: a fresh namespace per run
    ch = comm.transfer_engine.channel.scope(f"restart-{_RUNS[0]}")
    eng = TransferEngine(rank, 2, ch, 30.0)
    try:
        if rank == 1:
            buf = torch.zeros(4096, dtype=torch.uint8)
            eng.publish("kv", [eng.register(buf)])
            eng.wait_notification(0, b"one", timeout=WAIT_S)
            assert buf[:10].eq(1).all()
            ch.exchange("ready-to-restart", b"1", rank, 2)
            eng.close()  # the old incarnation is gone
            eng = TransferEngine(1, 2, ch, 30.0)  # republishes agent/1 under a new agent name
            buf2 = torch.zeros(4096, dtype=torch.uint8)
            eng.publish("kv", [eng.register(buf2)])
            ch.exchange("restarted", b"1", rank, 2)
            eng.wait_notification(0, b"two", timeout=WAIT_S)
            ok = bool(buf2[:10].eq(2).all())
            ch.exchange("end", b"1", rank, 2)
            return {"ok": ok}
        src = torch.ones(4096, dtype=torch.uint8)
        r = eng.register(src)
        (remote,) = eng.lookup(1, "kv")
        eng.write([(r, 0, remote, 0, 10)], notify=b"one").wait(WAIT_S)
        ch.exchange("ready-to-restart", b"1", rank, 2)
        ch.exchange("restarted", b"1", rank, 2)
        stale = _code(eng.write, [(r, 0, remote, 0, 10)])
        src.fill_(2)
        (remote2,) = eng.lookup(1, "kv")
        for _ in range(50):  # the stale endpoint is found and dropped on first use; the next call reconnects
            try:
                eng.write([(r, 0, remote2, 0, 10)], notify=b"two").wait(WAIT_S)
                break
            except CommError as exc:
                assert exc.code is ErrorCode.COMM_P2P_FAILED or "earlier agent" in exc.message, exc
                time.sleep(0.05)
        ch.exchange("end", b"1", rank, 2)
        return {"stale": stale, "remote_changed": remote2.agent != remote.agent}
    finally:
        eng.close()


def across_hosts(nbytes: int = 8 << 20) -> dict[str, Any]:
    """On simulated hosts (the netns lab): a batched write each way and a send/recv, bytes checked; the transport
    UCX reports for the peer."""
    comm = get_comm_backend("rdma")
    comm.init_process_group(timeout=60.0)
    eng = comm.transfer_engine
    rank, peer = comm.get_rank(), 1 - comm.get_rank()
    mine, inbox = _pattern(rank, nbytes), torch.zeros(nbytes, dtype=torch.uint8)
    out_r, in_r = eng.register(mine), eng.register(inbox)
    theirs_in = eng.exchange([out_r, in_r])[peer][1]
    bs = nbytes // 32
    eng.write([(out_r, i * bs, theirs_in, i * bs, bs) for i in range(32)], notify=b"done").wait(WAIT_S)
    eng.wait_notification(peer, b"done", timeout=WAIT_S)
    assert torch.equal(inbox, _pattern(peer, nbytes)), "bytes differ after the write"
    t = torch.arange(1 << 16, dtype=torch.float32) + rank
    got = torch.empty(1 << 16)
    works = comm.batch_isend_irecv([P2POp("isend", t, peer), P2POp("irecv", got, peer)])
    for w in works:
        w.wait(WAIT_S)
    assert torch.equal(got, torch.arange(1 << 16, dtype=torch.float32) + peer)
    transport = eng.transport(peer)
    eng.deregister(out_r)
    eng.deregister(in_r)
    comm.destroy()
    return {"transport": transport}


def p2p_view_reload(messages: int = 40, burst: int = 100, reload_after: int = 8) -> dict[str, Any]:
    """Every message loads one remote region into NIXL; the receiver's view of the sender is reloaded every
    ``reload_after`` of them, between transfers (new reads wait while one is due), and every message still arrives
    intact, also in a burst of async sends whose acknowledgements travel while views are reloaded."""
    from sagellm_comm_rdma import engine as engine_module

    comm = backend_for("rdma")
    rank = comm.get_rank()
    engine_module.RELOAD_AFTER = reload_after
    try:
        for i in range(messages):
            if rank == 0:
                comm.send(torch.full((1000,), float(i)), 1)
            else:
                buf = torch.empty(1000)
                comm.recv(buf, 0)
                assert torch.equal(buf, torch.full((1000,), float(i))), i
        # a burst: acknowledgements of earlier messages are still travelling when the view is reloaded
        if rank == 0:
            works = [comm.isend(torch.full((100,), float(i)), 1, tag=3) for i in range(burst)]
            for w in works:
                w.wait(WAIT_S)
        else:
            bufs = [torch.empty(100) for _ in range(burst)]
            works = [comm.irecv(b, 0, tag=3) for b in bufs]
            for i, (w, b) in enumerate(zip(works, bufs, strict=True)):
                w.wait(WAIT_S)
                assert torch.equal(b, torch.full((100,), float(i))), i
        loads = comm.transfer_engine._p2p_loads.get(1 - rank, 0)
    finally:
        engine_module.RELOAD_AFTER = 1024
    return {"loads_since_reload": loads}
