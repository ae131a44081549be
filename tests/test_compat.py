"""The exact spellings sagellm-comm's real callers use, exercised on 2 real ranks with every installed CPU backend
that names can select (gloo, shm).

Callers: sagellm-core (get_comm_backend / init_process_group / all_reduce with CommOp, PD-separation
send/recv), sagellm-kv-cache (KVTransferEngine's duck-typed send/recv, bytes payloads) and the seed API
(CommBackend.create, backend.init, CommGroup.create, CollectiveOps, Topology).
"""

from __future__ import annotations

import os
import socket

import compat_tasks
import pytest
from sagellm_protocol.errors import ErrorCode

from sagellm_comm.launch import RankPool
from sagellm_comm.testing.runner import PoolCache

pytestmark = pytest.mark.multirank

TIMEOUT = 60.0
CALLER_BACKENDS = ("gloo", "shm")


def _available(name: str) -> bool:
    from sagellm_comm import is_comm_backend_available

    return is_comm_backend_available(name)


@pytest.fixture(params=CALLER_BACKENDS)
def backend_name(request) -> str:
    if not _available(request.param):
        pytest.skip(f"backend {request.param} is not installed/available in this environment")
    return request.param


def _protocol_name(name: str) -> str:
    from sagellm_protocol import CommBackendType

    try:
        return CommBackendType(name).value
    except ValueError:
        return CommBackendType.CUSTOM.value


@pytest.fixture
def pool(comm_pools: PoolCache) -> RankPool:
    """One 2-rank pool for the whole module; replaced only if an earlier failure tore it down."""
    current = comm_pools.get(2)
    current.run(compat_tasks.reset, timeout=TIMEOUT)
    return current


def test_rank_functions_are_importable_in_spawned_ranks(pool):
    # the tests dir is on sys.path here (pytest rootdir insertion) and spawn children inherit sys.path
    assert pool.run(compat_tasks.reset, timeout=TIMEOUT) == [True, True]


def test_core_get_comm_backend_and_all_reduce_op_spellings(pool, backend_name):
    r0, r1 = pool.run(compat_tasks.core_all_reduce_spellings, backend_name, timeout=TIMEOUT)
    assert (r0["rank"], r1["rank"]) == (0, 1)
    for r in (r0, r1):
        assert r["world_size"] == 2
        assert r["name"] == backend_name
        assert r["returns_tensor"] is True
        assert r["str_sum"] == [3.0, 30.0]
        assert r["commop_sum"] == [5.0, 5.0, 5.0]
        assert r["reduceop_sum"] == [5.0, 5.0]
        assert r["commop_max"] == [3.0, 3.0]
        assert r["default_int_sum"] == [3]


def test_seed_create_init_broadcast_all_gather(pool, backend_name):
    r0, r1 = pool.run(compat_tasks.seed_create_init_broadcast_all_gather, backend_name, timeout=TIMEOUT)
    assert (r0["rank"], r1["rank"]) == (0, 1)
    for r in (r0, r1):
        assert r["world_size"] == 2 and r["group_size"] == 2
        assert r["port"] == pool.port
        assert r["broadcast_from_1"] == [100.0, 101.0, 102.0, 103.0]
        assert r["broadcast_from_0"] == [0.0, 1.0, 2.0, 3.0]
        assert r["all_gather_type"] == "list"
        assert r["all_gather"] == [[0, 1], [10, 11]]


def test_core_pd_separation_send_recv_per_layer(pool, backend_name):
    num_layers = 6
    r0, r1 = pool.run(compat_tasks.core_pd_separation, num_layers, backend_name, timeout=TIMEOUT)
    assert r0 == {"rank": 0, "layers_ok": []}
    assert r1 == {"rank": 1, "layers_ok": [True] * num_layers}


def test_kv_cache_transfer_engine_tensor_and_bytes(pool, backend_name):
    r0, r1 = pool.run(compat_tasks.kv_cache_transfer, backend_name, timeout=TIMEOUT)
    payload = bytes(range(7)) * 3
    assert r1["tensor"] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert r1["tensor_returned"] is True
    assert r1["bytearray"] == payload
    assert r1["bytearray_returned"] is True  # recv into a bytearray fills it in place and returns it
    assert r1["from_bytes"] == payload
    assert r0["answer"] == b"ack!"
    assert r0["answer_is_same_object"] is True


def test_recv_into_immutable_bytes_never_returns_untouched_zeros(pool, backend_name):
    _, r1 = pool.run(compat_tasks.recv_into_immutable_bytes, backend_name, timeout=TIMEOUT)
    how, value = r1["outcome"]
    if how == "refused":
        assert value == "invalid_argument"
        assert r1["after_refusal"] == b"ABCD"
    else:
        assert value == b"ABCD", "recv into immutable bytes silently returned the untouched buffer"


def test_kv_cache_stand_in_rejects_a_backend_without_p2p():
    class NoP2P:
        def get_rank(self):
            return 0

    with pytest.raises(TypeError, match="send"):
        compat_tasks.KVTransferEngineStandIn(NoP2P())


def test_seed_comm_group_and_collective_ops(pool):
    from sagellm_comm.registry import select_backend_name

    auto = select_backend_name("cpu")  # CommGroup.create() with no backend picks the best available one
    r0, r1 = pool.run(compat_tasks.seed_comm_group_collective_ops, timeout=TIMEOUT)
    assert (r0["rank"], r1["rank"]) == (0, 1)
    for r in (r0, r1):
        assert r["world_size"] == 2
        assert r["group_id"] == "world"
        assert r["backend"] == auto
        assert r["same_group_again"] is True
        assert r["all_reduce"] == [3.0, 6.0]
        assert r["all_reduce_max"] == [6.0]
        assert r["all_gather"] == [[0.0], [1.0]]
        assert r["all_reduce_no_group"] == [1.0]
        assert r["info"] == ("world", 2, [0, 1], _protocol_name(auto))


def test_init_process_group_without_arguments_reads_torchrun_env(pool, backend_name):
    results = pool.run(compat_tasks.torchrun_env_init, backend_name, timeout=TIMEOUT)
    for rank, r in enumerate(results):
        env = r["env"]
        assert env["RANK"] == str(rank) and env["LOCAL_RANK"] == str(rank) and env["WORLD_SIZE"] == "2"
        assert r["rank"] == r["get_rank"] == rank
        assert r["world_size"] == r["get_world_size"] == 2
        assert r["local_rank"] == rank
        assert r["master_addr"] == env["MASTER_ADDR"] == "127.0.0.1"
        assert r["master_port"] == int(env["MASTER_PORT"]) == pool.port
        assert r["sum"] == 2.0


def test_topology_discover_on_each_rank(pool):
    results = pool.run(compat_tasks.topology_view, timeout=TIMEOUT)
    hostname = socket.gethostname()
    for r in results:
        assert r["is_descriptor"] is True
        assert r["hostname"] == r["meta_hostname"] == hostname
        assert r["num_nodes"] == 1
        assert r["backend"] == "gloo"  # no GPU here
        assert r["cpu_count"] == (os.cpu_count() or 1)
    assert results[0]["node_id"] == results[1]["node_id"]  # same host, same node id


def test_pool_survives_many_tasks_back_to_back(pool, backend_name):
    # init/destroy several times on the same rendezvous port: callers re-create backends between phases
    for _ in range(3):
        r0, r1 = pool.run(compat_tasks.core_all_reduce_spellings, backend_name, timeout=TIMEOUT)
        assert r0["str_sum"] == r1["str_sum"] == [3.0, 30.0]


# ----------------------------------------------------------------------------------------------------------
# single-process checks
# ----------------------------------------------------------------------------------------------------------
def test_topology_discover_here():
    from sagellm_protocol import CommTopologyDescriptor

    from sagellm_comm import Topology

    topo = Topology.discover()
    assert topo.hostname == socket.gethostname()
    assert topo.cpu_count >= 1
    assert topo.devices == []  # CPU-only machine: torch sees no accelerator
    assert topo.accelerator_reason
    desc = topo.to_descriptor()
    assert isinstance(desc, CommTopologyDescriptor)
    assert desc.gpus_per_node >= 1 and desc.num_nodes == 1


def test_auto_selects_the_best_cpu_backend_installed():
    """shm (priority 20) when the memory plugin is installed and the ranks are on one host, else gloo (10)."""
    from sagellm_comm import get_comm_backend

    expected = "shm" if _available("shm") else "gloo"
    comm = get_comm_backend("auto")
    assert comm.name == expected
    assert not comm.is_initialized
    assert get_comm_backend().name == expected  # None means auto too


def test_unknown_backend_name_lists_known_names():
    from sagellm_comm import BackendNotSupportedError, CommBackend, get_comm_backend, list_comm_backends

    with pytest.raises(BackendNotSupportedError) as info:
        get_comm_backend("nccl-does-not-exist")
    assert info.value.code is ErrorCode.COMM_BACKEND_NOT_SUPPORTED
    assert "nccl-does-not-exist" in str(info.value)
    known = [s.name for s in list_comm_backends()]
    assert "known backends:" in str(info.value) and any(k in str(info.value) for k in known)
    with pytest.raises(BackendNotSupportedError) as info:
        CommBackend.create("nope")
    assert info.value.code is ErrorCode.COMM_BACKEND_NOT_SUPPORTED
    assert any(k in info.value.message for k in known)
