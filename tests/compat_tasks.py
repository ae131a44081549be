"""Rank functions for tests/test_compat.py: each runs on every rank of a local RankPool.

They use the exact spellings of sagellm-comm's real callers (sagellm-core, sagellm-kv-cache, the seed API) and
return plain Python values the test compares. Every task leaves the process with no initialized backend (it
destroys what it created), so the next task on the same pool can initialize again.
"""

from __future__ import annotations

import contextlib
import os

import torch


def _rank_and_world() -> tuple[int, int]:
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])


def reset() -> bool:
    """Destroy whatever an earlier (failed) task left initialized in this rank."""
    import torch.distributed as dist

    from sagellm_comm.backend import live_backends

    for backend in reversed(live_backends()):
        with contextlib.suppress(Exception):
            backend.destroy()
    if dist.is_initialized():
        dist.destroy_process_group()
    return True


def core_all_reduce_spellings(name: str = "gloo") -> dict:
    """sagellm-core: get_comm_backend + init_process_group(world_size=, rank=) + all_reduce, every op form."""
    from sagellm_comm import CollectiveOps, CommBackend, CommGroup, ReduceOp, Topology, get_comm_backend
    from sagellm_comm.backend import CommBackend as CommBackendFromBackend
    from sagellm_comm.backend import CommOp

    assert CommBackendFromBackend is CommBackend
    assert CollectiveOps is not None and CommGroup is not None and Topology is not None

    R, W = _rank_and_world()
    comm = get_comm_backend(name)
    try:
        comm.init_process_group(world_size=W, rank=R)
        out = {"rank": comm.get_rank(), "world_size": comm.get_world_size(), "name": comm.name}
        t = torch.tensor([float(R + 1), 10.0 * (R + 1)])
        res = comm.all_reduce(t, op="sum")
        out["str_sum"] = t.tolist()
        out["returns_tensor"] = res is t
        t = torch.full((3,), float(R + 2))
        comm.all_reduce(t, op=CommOp.SUM)
        out["commop_sum"] = t.tolist()
        t = torch.full((2,), float(R + 2))
        comm.all_reduce(t, op=ReduceOp.SUM)
        out["reduceop_sum"] = t.tolist()
        t = torch.full((2,), float(R + 2))
        comm.all_reduce(t, op=CommOp.MAX)
        out["commop_max"] = t.tolist()
        t = torch.tensor([R + 1], dtype=torch.int64)
        comm.all_reduce(t)  # default op is sum
        out["default_int_sum"] = t.tolist()
        return out
    finally:
        comm.destroy()


def seed_create_init_broadcast_all_gather(name: str = "gloo") -> dict:
    """Seed API: CommBackend.create("gloo") (or the backend under test) + backend.init(rank=, world_size=,
    master_addr=, master_port=)."""
    from sagellm_comm import CommBackend

    R, _ = _rank_and_world()
    port = int(os.environ["MASTER_PORT"])
    backend = CommBackend.create(name)
    try:
        group = backend.init(rank=R, world_size=2, master_addr="127.0.0.1", master_port=port)
        out = {
            "rank": backend.get_rank(),
            "world_size": backend.get_world_size(),
            "group_size": group.world_size,
            "port": backend.rendezvous.master_port,
        }
        t = torch.arange(4, dtype=torch.float32) + 100.0 * R
        backend.broadcast(t, 1)  # rank 1 is the source
        out["broadcast_from_1"] = t.tolist()
        t = torch.arange(4, dtype=torch.float32) + 100.0 * R
        backend.broadcast(t, 0)
        out["broadcast_from_0"] = t.tolist()
        gathered = backend.all_gather(torch.tensor([R * 10, R * 10 + 1], dtype=torch.int32))
        out["all_gather_type"] = type(gathered).__name__
        out["all_gather"] = [g.tolist() for g in gathered]
        return out
    finally:
        backend.destroy()


def core_pd_separation(num_layers: int, name: str = "gloo") -> dict:
    """sagellm-core PD separation: the prefill rank 0 sends K then V of each layer to the decode rank 1."""
    from sagellm_comm import get_comm_backend

    R, W = _rank_and_world()
    comm = get_comm_backend(name)
    try:
        comm.init_process_group(world_size=W, rank=R)
        shape = (2, 3, 4)  # (heads, tokens, head_dim)
        received = []
        if comm.get_rank() == 0:
            dst_rank = 1
            for layer in range(num_layers):
                k_tensor = torch.full(shape, float(layer)) + torch.arange(24, dtype=torch.float32).view(shape)
                v_tensor = -k_tensor
                comm.send(k_tensor, dst_rank)
                comm.send(v_tensor, dst_rank)
        else:
            src_rank = 0
            for _layer in range(num_layers):
                k_buffer = torch.empty(shape)
                v_buffer = torch.empty(shape)
                comm.recv(k_buffer, src_rank)
                comm.recv(v_buffer, src_rank)
                received.append((k_buffer.clone(), v_buffer.clone()))
        checks = []
        for layer, (k, v) in enumerate(received):
            want_k = torch.full(shape, float(layer)) + torch.arange(24, dtype=torch.float32).view(shape)
            checks.append(bool(torch.equal(k, want_k)) and bool(torch.equal(v, -want_k)))
        return {"rank": comm.get_rank(), "layers_ok": checks}
    finally:
        comm.destroy()


class KVTransferEngineStandIn:
    """Mirrors sagellm-kv-cache's KVTransferEngine: check the backend's duck type, then send/recv with it."""

    REQUIRED = ("send", "recv", "get_rank", "get_world_size")

    def __init__(self, comm_backend) -> None:
        for name in self.REQUIRED:
            if not callable(getattr(comm_backend, name, None)):
                raise TypeError(f"comm backend lacks a callable {name}()")
        self.comm_backend = comm_backend

    def transfer(self, tensor, dst_rank: int) -> None:
        self.comm_backend.send(tensor, dst_rank)

    def receive(self, tensor, src_rank: int):
        return self.comm_backend.recv(tensor, src_rank)


def kv_cache_transfer(name: str = "gloo") -> dict:
    from sagellm_comm import get_comm_backend

    R, W = _rank_and_world()
    comm_backend = get_comm_backend(name)
    try:
        comm_backend.init_process_group(world_size=W, rank=R)
        engine = KVTransferEngineStandIn(comm_backend)
        payload = bytes(range(7)) * 3  # 21 bytes
        out: dict = {"rank": comm_backend.get_rank()}
        if R == 0:
            engine.transfer(torch.arange(6, dtype=torch.float16).view(2, 3), 1)
            engine.transfer(bytearray(payload), 1)
            engine.transfer(payload, 1)  # immutable bytes are accepted too
            # and the other direction: rank 1 answers with a bytearray
            answer = bytearray(4)
            got = engine.receive(answer, 1)
            out["answer"] = bytes(answer)
            out["answer_is_same_object"] = got is answer
        else:
            t = torch.empty(2, 3, dtype=torch.float16)
            got = engine.receive(t, 0)
            out["tensor"] = t.tolist()
            out["tensor_returned"] = got is t
            buf = bytearray(len(payload))
            got = engine.receive(buf, 0)
            out["bytearray"] = bytes(buf)
            out["bytearray_returned"] = got is buf
            buf2 = bytearray(len(payload))
            engine.receive(buf2, 0)
            out["from_bytes"] = bytes(buf2)
            engine.transfer(bytearray(b"ack!"), 0)
        return out
    finally:
        comm_backend.destroy()


def recv_into_immutable_bytes(name: str = "gloo") -> dict:
    """recv into ``bytes`` cannot fill them in place: it must be refused before any communication or hand the
    received data back, never return the untouched zeros as if they had been received."""
    from sagellm_comm import InvalidArgumentError, get_comm_backend

    R, W = _rank_and_world()
    comm = get_comm_backend(name)
    try:
        comm.init_process_group(world_size=W, rank=R)
        out: dict = {}
        if R == 0:
            comm.send(b"ABCD", 1)
        else:
            try:
                got = comm.recv(bytes(4), 0)
                out["outcome"] = ("returned", bytes(got))
            except InvalidArgumentError as exc:
                out["outcome"] = ("refused", exc.code.value)
                buf = bytearray(4)
                comm.recv(buf, 0)  # the message is still there
                out["after_refusal"] = bytes(buf)
        return out
    finally:
        comm.destroy()


def seed_comm_group_collective_ops() -> dict:
    """Seed API: group = CommGroup.create(world_size=2, rank=R); CollectiveOps.all_reduce(t, group=group)."""
    from sagellm_comm import CollectiveOps, CommGroup

    R, _ = _rank_and_world()
    group = CommGroup.create(world_size=2, rank=R)
    try:
        out = {
            "rank": group.rank,
            "world_size": group.world_size,
            "group_id": group.group_id,
            "backend": group.backend.name,
        }
        # asking again returns the same world group (no second init)
        out["same_group_again"] = CommGroup.create(world_size=2, rank=R) is group
        t = torch.tensor([1.0, 2.0]) * (R + 1)
        CollectiveOps.all_reduce(t, group=group)
        out["all_reduce"] = t.tolist()
        t = torch.tensor([3.0]) * (R + 1)
        CollectiveOps.all_reduce(t, op="max", group=group)
        out["all_reduce_max"] = t.tolist()
        gathered = CollectiveOps.all_gather(torch.tensor([float(R)]), group=group)
        out["all_gather"] = [g.tolist() for g in gathered]
        # no group: the world group of the backend initialized in this process
        t = torch.tensor([float(R)])
        CollectiveOps.all_reduce(t)
        out["all_reduce_no_group"] = t.tolist()
        info = group.info()
        out["info"] = (info.group_id, info.world_size, list(info.ranks), str(info.backend.value))
        return out
    finally:
        group.backend.destroy()


def torchrun_env_init(name: str = "gloo") -> dict:
    """init_process_group() with no arguments reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT."""
    from sagellm_comm import get_comm_backend

    comm = get_comm_backend(name)
    try:
        comm.init_process_group()
        rdzv = comm.rendezvous
        t = torch.ones(1)
        comm.all_reduce(t, op="sum")
        env = {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
        return {
            "env": env,
            "rank": rdzv.rank,
            "world_size": rdzv.world_size,
            "local_rank": rdzv.local_rank,
            "master_addr": rdzv.master_addr,
            "master_port": rdzv.master_port,
            "sum": t.item(),
            "get_rank": comm.get_rank(),
            "get_world_size": comm.get_world_size(),
        }
    finally:
        comm.destroy()


def topology_view() -> dict:
    from sagellm_protocol import CommTopologyDescriptor

    from sagellm_comm import Topology

    topo = Topology.discover()
    desc = topo.to_descriptor()
    return {
        "is_descriptor": isinstance(desc, CommTopologyDescriptor),
        "hostname": topo.hostname,
        "node_id": topo.node_id,
        "num_nodes": desc.num_nodes,
        "backend": desc.backend.value,
        "cpu_count": topo.cpu_count,
        "meta_hostname": desc.metadata.get("hostname"),
    }
