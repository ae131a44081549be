"""Single-process unit tests of the core contract: errors, reduce ops, rendezvous, validation, capabilities,
registration of an in-process backend, work handles and group info (gloo at world size 1 where a backend is
needed)."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.distributed as dist
from hypothesis import given
from hypothesis import strategies as st
from sagellm_protocol import CommBackendType, CommGroupInfo, ReduceOp
from sagellm_protocol.errors import Error, ErrorCode

from sagellm_comm import (
    BackendNotSupportedError,
    Capabilities,
    CollectiveFailedError,
    CollectiveOps,
    CommBackend,
    CommError,
    CommGroup,
    CommTimeoutError,
    GroupInvalidError,
    GroupNotFoundError,
    InvalidArgumentError,
    NotInitializedError,
    P2PFailedError,
    RankMismatchError,
    get_comm_backend,
    is_comm_backend_available,
    list_comm_backends,
    register_comm_backend,
)
from sagellm_comm.backend import CommOp
from sagellm_comm.group import validate_group_ranks
from sagellm_comm.ops import normalize_reduce_op
from sagellm_comm.registry import backend_registry, current_backend
from sagellm_comm.rendezvous import (
    DEFAULT_MASTER_ADDR,
    DEFAULT_MASTER_PORT,
    DEFAULT_TIMEOUT_S,
    resolve_rendezvous,
)
from sagellm_comm.work import CompletedWork, Work

RDZV_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SAGELLM_COMM_TIMEOUT_S")


@pytest.fixture
def clean_env(monkeypatch):
    for var in RDZV_ENV:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture
def gloo1(clean_env):
    """A gloo backend initialized as a world of one in this process; destroyed afterwards."""
    was_initialized = dist.is_initialized()
    comm = get_comm_backend("gloo")
    comm.init_process_group(world_size=1, rank=0)
    try:
        yield comm
    finally:
        comm.destroy()
        assert dist.is_initialized() == was_initialized  # the backend released what it created


def _code(excinfo) -> ErrorCode:
    return excinfo.value.code


# ----------------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------------
ERRORS = [
    (CommError, ErrorCode.DISTRIBUTED_RUNTIME_ERROR),
    (InvalidArgumentError, ErrorCode.INVALID_ARGUMENT),
    (BackendNotSupportedError, ErrorCode.COMM_BACKEND_NOT_SUPPORTED),
    (RankMismatchError, ErrorCode.COMM_RANK_MISMATCH),
    (GroupNotFoundError, ErrorCode.COMM_GROUP_NOT_FOUND),
    (GroupInvalidError, ErrorCode.COMM_GROUP_INVALID),
    (NotInitializedError, ErrorCode.COMM_GROUP_INVALID),
    (CommTimeoutError, ErrorCode.COMM_TIMEOUT),
    (CollectiveFailedError, ErrorCode.COMM_COLLECTIVE_FAILED),
    (P2PFailedError, ErrorCode.COMM_P2P_FAILED),
]


@pytest.mark.parametrize(("cls", "code"), ERRORS, ids=[c.__name__ for c, _ in ERRORS])
def test_error_code_retryable_protocol_and_pickle(cls, code):
    err = cls("something went wrong; do X")
    assert isinstance(err, CommError) and isinstance(err, RuntimeError)
    assert err.code is code
    assert err.retryable is False
    assert err.message == "something went wrong; do X"
    assert str(err) == f"[{code.value}] something went wrong; do X"
    proto = err.to_protocol()
    assert isinstance(proto, Error)
    assert (proto.code, proto.message, proto.retryable) == (code, err.message, False)

    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert (back.code, back.retryable, back.message, str(back)) == (code, False, err.message, str(err))

    custom = cls("retry me", code=ErrorCode.COMM_TIMEOUT, retryable=True)
    back = pickle.loads(pickle.dumps(custom))
    assert (back.code, back.retryable) == (ErrorCode.COMM_TIMEOUT, True)
    assert back.to_protocol().retryable is True


def test_error_types_fit_python_hierarchies():
    assert isinstance(InvalidArgumentError("x"), ValueError)
    assert isinstance(RankMismatchError("x"), ValueError)
    assert isinstance(CommTimeoutError("x"), TimeoutError)
    assert isinstance(NotInitializedError("x"), GroupInvalidError)


# ----------------------------------------------------------------------------------------------------------
# reduce ops
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("sum", ReduceOp.SUM),
        ("SUM", ReduceOp.SUM),
        ("Sum", ReduceOp.SUM),
        (ReduceOp.SUM, ReduceOp.SUM),
        (CommOp.SUM, ReduceOp.SUM),
        (CommOp.MAX, ReduceOp.MAX),
        ("product", ReduceOp.PROD),
        ("prod", ReduceOp.PROD),
        ("avg", ReduceOp.AVG),
        ("mean", ReduceOp.AVG),
        (dist.ReduceOp.SUM, ReduceOp.SUM),
        (dist.ReduceOp.PRODUCT, ReduceOp.PROD),
        (dist.ReduceOp.MAX, ReduceOp.MAX),
        (dist.ReduceOp.BXOR, ReduceOp.BXOR),
    ],
)
def test_normalize_reduce_op_accepts_caller_spellings(spelling, expected):
    assert normalize_reduce_op(spelling) is expected


def test_commop_is_the_protocol_enum():
    assert CommOp is ReduceOp
    assert CommOp.SUM is ReduceOp.SUM


@pytest.mark.parametrize("bad", ["summ", "", "add", 3, None, 1.5, "sum "])
def test_normalize_reduce_op_rejects_unknown(bad):
    with pytest.raises(InvalidArgumentError) as info:
        normalize_reduce_op(bad)
    assert _code(info) is ErrorCode.INVALID_ARGUMENT
    assert "sum" in str(info.value)  # lists the accepted values


_ALL_SPELLINGS = sorted({op.value for op in ReduceOp} | {op.name for op in ReduceOp} | {"product", "mean"})


@given(
    st.sampled_from(_ALL_SPELLINGS).flatmap(
        lambda word: st.tuples(st.just(word), st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    )
)
def test_normalize_reduce_op_is_case_insensitive(word_and_case):
    word, upper = word_and_case
    spelled = "".join(c.upper() if u else c.lower() for c, u in zip(word, upper, strict=True))
    assert normalize_reduce_op(spelled) is normalize_reduce_op(word.lower())


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8))
def test_normalize_reduce_op_accepts_only_known_words(word):
    known = {s.lower() for s in _ALL_SPELLINGS} | {"average"}
    if word in known:
        assert isinstance(normalize_reduce_op(word), ReduceOp)
    else:
        with pytest.raises(InvalidArgumentError):
            normalize_reduce_op(word)


# ----------------------------------------------------------------------------------------------------------
# group rank validation (property test)
# ----------------------------------------------------------------------------------------------------------
@given(st.lists(st.integers(min_value=-3, max_value=10), max_size=8), st.integers(min_value=1, max_value=8))
def test_validate_group_ranks_property(ranks, world_size):
    if not ranks:
        with pytest.raises(InvalidArgumentError):
            validate_group_ranks(ranks, world_size)
    elif len(set(ranks)) != len(ranks):
        with pytest.raises(InvalidArgumentError) as info:
            validate_group_ranks(ranks, world_size)
        assert _code(info) is ErrorCode.INVALID_ARGUMENT
    elif any(not 0 <= r < world_size for r in ranks):
        with pytest.raises(RankMismatchError) as info:
            validate_group_ranks(ranks, world_size)
        assert _code(info) is ErrorCode.COMM_RANK_MISMATCH
    else:
        # group rank i is the i-th smallest global rank, whatever order the ranks were given in (as torch)
        assert validate_group_ranks(ranks, world_size) == tuple(sorted(ranks))


@pytest.mark.parametrize("bad", [[0, True], [0, 1.0], ["0"], 5])
def test_validate_group_ranks_rejects_non_int(bad):
    with pytest.raises(InvalidArgumentError):
        validate_group_ranks(bad, 4)


# ----------------------------------------------------------------------------------------------------------
# rendezvous
# ----------------------------------------------------------------------------------------------------------
def test_rendezvous_from_arguments(clean_env):
    r = resolve_rendezvous(world_size=4, rank=2, master_addr="10.0.0.7", master_port=1234, timeout=5)
    assert (r.rank, r.world_size, r.local_rank) == (2, 4, 2)
    assert (r.master_addr, r.master_port, r.timeout_s) == ("10.0.0.7", 1234, 5.0)
    assert r.url == "tcp://10.0.0.7:1234"
    assert resolve_rendezvous(2, 0, init_method="file:///tmp/x").url == "file:///tmp/x"


def test_rendezvous_defaults_to_a_world_of_one(clean_env):
    r = resolve_rendezvous()
    assert (r.rank, r.world_size, r.local_rank) == (0, 1, 0)
    assert (r.master_addr, r.master_port, r.timeout_s) == (DEFAULT_MASTER_ADDR, DEFAULT_MASTER_PORT, DEFAULT_TIMEOUT_S)


def test_rendezvous_from_torchrun_env(clean_env):
    env = {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "node0",
        "MASTER_PORT": "2345",
        "SAGELLM_COMM_TIMEOUT_S": "7.5",
    }
    for k, v in env.items():
        clean_env.setenv(k, v)
    r = resolve_rendezvous()
    assert (r.rank, r.world_size, r.local_rank) == (3, 4, 1)
    assert (r.master_addr, r.master_port, r.timeout_s) == ("node0", 2345, 7.5)
    # arguments win over the environment
    r = resolve_rendezvous(world_size=2, rank=0, master_addr="127.0.0.1", master_port=999, timeout=1)
    assert (r.rank, r.world_size, r.master_addr, r.master_port, r.timeout_s) == (0, 2, "127.0.0.1", 999, 1.0)


@pytest.mark.parametrize(("world_size", "rank"), [(2, 2), (2, 5), (2, -1), (1, 1)])
def test_rendezvous_rank_out_of_range(clean_env, world_size, rank):
    with pytest.raises(RankMismatchError) as info:
        resolve_rendezvous(world_size, rank)
    assert _code(info) is ErrorCode.COMM_RANK_MISMATCH
    assert str(rank) in str(info.value)


def test_rendezvous_rank_out_of_range_from_env(clean_env):
    clean_env.setenv("RANK", "4")
    clean_env.setenv("WORLD_SIZE", "4")
    with pytest.raises(RankMismatchError):
        resolve_rendezvous()


@pytest.mark.parametrize("world_size", [0, -2])
def test_rendezvous_world_size_below_one(clean_env, world_size):
    with pytest.raises(InvalidArgumentError) as info:
        resolve_rendezvous(world_size, 0)
    assert _code(info) is ErrorCode.INVALID_ARGUMENT


@pytest.mark.parametrize("world_size", [0, -2])
def test_rendezvous_world_size_below_one_without_rank(clean_env, world_size):
    # a world size below one is the error, whatever else is missing
    with pytest.raises(InvalidArgumentError) as info:
        resolve_rendezvous(world_size)
    assert _code(info) is ErrorCode.INVALID_ARGUMENT


def test_rendezvous_world_size_above_one_needs_a_rank(clean_env):
    with pytest.raises(CommError) as info:
        resolve_rendezvous(world_size=2)
    assert _code(info) is ErrorCode.COMM_RANK_MISMATCH
    assert "RANK" in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"world_size": "2", "rank": 0},
        {"world_size": 2, "rank": 1.0},
        {"world_size": True, "rank": 0},
        {"master_port": 70000},
        {"master_port": 0},
        {"timeout": 0},
        {"timeout": -1.0},
    ],
)
def test_rendezvous_invalid_arguments(clean_env, kwargs):
    with pytest.raises(InvalidArgumentError) as info:
        resolve_rendezvous(**kwargs)
    assert _code(info) is ErrorCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("var", "value"), [("WORLD_SIZE", "two"), ("RANK", "x"), ("MASTER_PORT", "p"), ("SAGELLM_COMM_TIMEOUT_S", "soon")]
)
def test_rendezvous_invalid_env(clean_env, var, value):
    clean_env.setenv(var, value)
    with pytest.raises(InvalidArgumentError) as info:
        resolve_rendezvous()
    assert var in str(info.value)


# ----------------------------------------------------------------------------------------------------------
# lifecycle and argument checks on gloo (world size 1)
# ----------------------------------------------------------------------------------------------------------
def test_collective_before_init_is_not_initialized(clean_env):
    comm = get_comm_backend("gloo")
    assert not comm.is_initialized
    for call in (
        lambda: comm.all_reduce(torch.ones(2)),
        comm.get_rank,
        comm.get_world_size,
        lambda: comm.send(torch.ones(1), 0),
        lambda: comm.create_group([0]),
    ):
        with pytest.raises(NotInitializedError) as info:
            call()
        assert _code(info) is ErrorCode.COMM_GROUP_INVALID
        assert "init_process_group" in str(info.value)


def test_collective_ops_without_any_backend(clean_env):
    import sagellm_comm.backend as backend_module

    clean_env.setattr(backend_module, "_LIVE", {})  # whatever other tests left active in this process
    assert current_backend() is None
    with pytest.raises(NotInitializedError) as info:
        CollectiveOps.all_reduce(torch.ones(1))
    assert _code(info) is ErrorCode.COMM_GROUP_INVALID


def test_world_of_one_lifecycle(gloo1):
    assert gloo1.is_initialized and gloo1.get_rank() == 0 and gloo1.get_world_size() == 1
    assert current_backend("gloo") is gloo1
    t = torch.tensor([1.5, 2.5])
    assert gloo1.all_reduce(t, op="sum") is t
    assert t.tolist() == [1.5, 2.5]
    with pytest.raises(GroupInvalidError) as info:
        gloo1.init_process_group(world_size=1, rank=0)
    assert "already initialized" in str(info.value)
    # CollectiveOps without a group uses this backend's world
    t = torch.tensor([4.0])
    CollectiveOps.all_reduce(t, op="max")
    assert t.tolist() == [4.0]


def test_destroy_twice_and_ops_after_destroy(clean_env):
    comm = get_comm_backend("gloo")
    world = comm.init_process_group(world_size=1, rank=0)
    comm.destroy()
    comm.destroy()  # safe
    assert current_backend("gloo") is None
    with pytest.raises(NotInitializedError):
        comm.all_reduce(torch.ones(1))
    with pytest.raises(NotInitializedError):
        comm.all_reduce(torch.ones(1), group=world)
    # and it can be initialized again
    comm.init_process_group(world_size=1, rank=0)
    comm.destroy()


def test_create_group_validation(gloo1):
    with pytest.raises(InvalidArgumentError) as info:
        gloo1.create_group([0, 0])
    assert _code(info) is ErrorCode.INVALID_ARGUMENT
    with pytest.raises(RankMismatchError) as info:
        gloo1.create_group([0, 1])
    assert _code(info) is ErrorCode.COMM_RANK_MISMATCH
    with pytest.raises(InvalidArgumentError):
        gloo1.create_group([])
    sub = gloo1.create_group([0], group_id="tp")
    assert (sub.rank, sub.world_size, sub.group_id, sub.is_member) == (0, 1, "tp", True)
    assert gloo1.get_group("tp") is sub
    with pytest.raises(InvalidArgumentError):
        gloo1.create_group([0], group_id="tp")  # the id is taken
    t = torch.ones(3)
    sub.all_reduce(t)
    assert t.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(GroupNotFoundError) as info:
        gloo1.get_group("nope")
    assert _code(info) is ErrorCode.COMM_GROUP_NOT_FOUND


def test_capability_checks_on_gloo(gloo1):
    with pytest.raises(BackendNotSupportedError) as info:
        gloo1.all_reduce(torch.tensor([True, False]), op="sum")
    assert _code(info) is ErrorCode.COMM_BACKEND_NOT_SUPPORTED
    msg = str(info.value)
    assert "'gloo'" in msg and "all_reduce" in msg and "sum" in msg and "bool" in msg

    with pytest.raises(BackendNotSupportedError) as info:
        gloo1.all_reduce(torch.tensor([1, 2]), op="avg")  # AVG only on floats
    assert "avg" in str(info.value)

    with pytest.raises(InvalidArgumentError) as info:
        gloo1.all_reduce(torch.ones(1), op="summ")
    assert _code(info) is ErrorCode.INVALID_ARGUMENT

    with pytest.raises(BackendNotSupportedError) as info:
        gloo1.all_reduce(torch.ones(2, dtype=torch.complex64))
    assert "complex64" in str(info.value)

    with pytest.raises(InvalidArgumentError):
        gloo1.all_reduce([1.0, 2.0])  # not a tensor


def test_peer_checks_on_gloo(gloo1):
    with pytest.raises(RankMismatchError) as info:
        gloo1.send(torch.ones(1), 0)  # own rank
    assert _code(info) is ErrorCode.COMM_RANK_MISMATCH
    assert "own rank" in str(info.value)
    with pytest.raises(RankMismatchError):
        gloo1.recv(torch.ones(1), 0)
    with pytest.raises(RankMismatchError):
        gloo1.send(torch.ones(1), 1)  # out of range
    with pytest.raises(RankMismatchError):
        gloo1.broadcast(torch.ones(1), 3)
    with pytest.raises(InvalidArgumentError):
        gloo1.send(torch.ones(1), "1")
    with pytest.raises(InvalidArgumentError):
        gloo1.send(torch.ones(1), True)


def test_async_work_on_gloo(gloo1):
    t = torch.tensor([2.0, 3.0])
    work = gloo1.all_reduce(t, op="sum", async_op=True)
    assert isinstance(work, Work)
    assert work.wait(timeout=10) is True
    assert work.is_completed()
    assert work.result() is t
    out = gloo1.all_gather(torch.tensor([7]), async_op=True).result(timeout=10)
    assert [o.tolist() for o in out] == [[7]]


def test_group_info_is_protocol(gloo1):
    info = gloo1.world_group.info()
    assert isinstance(info, CommGroupInfo)
    assert info.group_id == "world"
    assert info.backend is CommBackendType.GLOO
    assert (info.world_size, info.ranks, info.root_rank) == (1, [0], 0)
    assert info.metadata["backend_name"] == "gloo"
    assert info.timeout_ms == pytest.approx(DEFAULT_TIMEOUT_S * 1000.0)


def test_comm_group_create_reuses_an_initialized_backend(gloo1):
    assert CommGroup.create(world_size=1, rank=0) is gloo1.world_group
    assert CommGroup.create(backend=gloo1) is gloo1.world_group


# ----------------------------------------------------------------------------------------------------------
# an in-process backend registered with register_comm_backend
# ----------------------------------------------------------------------------------------------------------
class LoopbackBackend(CommBackend):
    """A world-of-one backend that declares only all_reduce (SUM on float32)."""

    name = "loopback-unit"
    capabilities = Capabilities(
        ops=frozenset({"all_reduce"}),
        dtypes=frozenset({torch.float32}),
        devices=frozenset({"cpu"}),
        reduce_support={ReduceOp.SUM: frozenset({torch.float32})},
        sub_groups=False,
        async_ops=False,
        p2p_tags=False,
    )

    def _init(self, rendezvous, options):
        if rendezvous.world_size != 1:
            raise BackendNotSupportedError("loopback-unit is a world of one")
        return "loopback-world"

    def _destroy(self):
        pass

    def _all_reduce(self, tensor, op, group, async_op):
        return None  # a world of one: the tensor already holds the sum


@pytest.fixture
def loopback(clean_env):
    spec = register_comm_backend("loopback-unit", LoopbackBackend, description="unit-test loopback")
    comm = get_comm_backend("loopback-unit")
    try:
        yield spec, comm
    finally:
        comm.destroy()
        backend_registry().unregister("loopback-unit")


def test_registered_backend_is_listed_and_created(loopback):
    spec, comm = loopback
    assert spec.plugin == "in-process"
    assert isinstance(comm, LoopbackBackend)
    assert is_comm_backend_available("loopback-unit")
    status = {s.name: s for s in list_comm_backends()}["loopback-unit"]
    assert status.available and status.description == "unit-test loopback"
    assert status.capabilities["ops"] == ["all_reduce"]
    assert status.capabilities["reduce_ops"] == ["sum"]
    # auto still prefers the installed plugins (loopback-unit has priority 0)
    assert get_comm_backend("auto").name != "loopback-unit"
    assert comm.backend_type is CommBackendType.CUSTOM


def test_registered_backend_declared_op_works(loopback):
    _, comm = loopback
    comm.init_process_group(world_size=1, rank=0)
    t = torch.tensor([1.0, 2.0])
    assert comm.all_reduce(t, op="sum") is t
    assert t.tolist() == [1.0, 2.0]
    info = comm.world_group.info()
    assert info.backend is CommBackendType.CUSTOM and info.metadata["backend_name"] == "loopback-unit"


@pytest.mark.parametrize(
    ("op", "call"),
    [
        ("broadcast", lambda c: c.broadcast(torch.ones(1), 0)),
        ("all_gather", lambda c: c.all_gather(torch.ones(1))),
        ("send", lambda c: c.send(torch.ones(1), 0)),
        ("barrier", lambda c: c.barrier()),
        ("create_group", lambda c: c.create_group([0])),
        ("all_reduce", lambda c: c.all_reduce(torch.ones(1), op="max")),
        ("all_reduce", lambda c: c.all_reduce(torch.ones(1, dtype=torch.float64))),
        ("all_reduce", lambda c: c.all_reduce(torch.ones(1), async_op=True)),
    ],
)
def test_registered_backend_undeclared_op_is_not_supported(loopback, op, call):
    _, comm = loopback
    comm.init_process_group(world_size=1, rank=0)
    with pytest.raises(BackendNotSupportedError) as info:
        call(comm)
    assert _code(info) is ErrorCode.COMM_BACKEND_NOT_SUPPORTED
    assert "'loopback-unit'" in str(info.value)
    assert op in str(info.value)


def test_undeclared_op_fails_before_init_too(loopback):
    _, comm = loopback
    with pytest.raises(BackendNotSupportedError) as info:
        comm.broadcast(torch.ones(1), 0)
    assert "broadcast" in str(info.value)


def test_unavailable_registered_backend(clean_env):
    register_comm_backend("loopback-off", LoopbackBackend, available=lambda: (False, "switched off for the test"))
    try:
        status = {s.name: s for s in list_comm_backends()}["loopback-off"]
        assert not status.available and status.reason == "switched off for the test"
        assert not is_comm_backend_available("loopback-off")
        with pytest.raises(BackendNotSupportedError) as info:
            get_comm_backend("loopback-off")
        assert "switched off for the test" in str(info.value)
    finally:
        backend_registry().unregister("loopback-off")


@pytest.mark.parametrize("name", ["auto", "", "Loopback", " spaced "])
def test_register_rejects_bad_names(name):
    with pytest.raises(InvalidArgumentError):
        register_comm_backend(name, LoopbackBackend)
    assert name not in backend_registry().names()


def test_capabilities_reject_unknown_op_names():
    with pytest.raises(ValueError, match="allreduce"):
        Capabilities(ops=frozenset({"allreduce"}), dtypes=frozenset({torch.float32}), devices=frozenset({"cpu"}))


# ----------------------------------------------------------------------------------------------------------
# work handles
# ----------------------------------------------------------------------------------------------------------
class PendingWork(Work):
    def __init__(self, op="all_reduce", **kw):
        super().__init__(op, **kw)
        self.done = False
        self.waits = 0

    def is_completed(self):
        return self.done

    def _wait(self, timeout):
        self.waits += 1
        return self.done


class FailingWork(PendingWork):
    def _wait(self, timeout):
        self.waits += 1
        raise CollectiveFailedError("peer vanished")


def test_completed_work():
    w = CompletedWork("barrier", result="out")
    assert w.is_completed()
    assert w.wait() is True and w.wait(timeout=0.0) is True
    assert w.result(timeout=1) == "out"
    assert "barrier" in repr(w)


def test_pending_work_times_out_then_completes():
    calls = []
    w = PendingWork(result=[1], on_complete=lambda: calls.append(1))
    assert not w.is_completed()
    with pytest.raises(CommTimeoutError) as info:
        w.wait(timeout=0.01)
    assert info.value.code is ErrorCode.COMM_TIMEOUT
    assert info.value.retryable is True  # waiting again may succeed
    assert "all_reduce" in str(info.value)
    w.done = True
    assert w.wait(timeout=0.01) is True
    assert w.result() == [1]
    assert calls == [1]  # the completion callback runs once
    assert w.wait() is True and calls == [1]


def test_failing_work_raises_the_same_error_again():
    w = FailingWork()
    with pytest.raises(CollectiveFailedError) as first:
        w.wait(timeout=1)
    with pytest.raises(CollectiveFailedError) as second:
        w.wait(timeout=1)
    assert second.value is first.value
    assert w.waits == 1
