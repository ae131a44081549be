"""``BackendConformance``: the shared suite every backend plugin must pass (fsspec ``tests/abstract`` style).

A vendor subclasses it in their own test file and names their backend::

    from sagellm_comm.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        backend = "mybackend"

or runs it without writing a file: ``python -m sagellm_comm.testing mybackend``.

Tests run on world sizes 1, 2 and 4 (``world_sizes``) with one pool of rank processes per size, reused across
tests. Every tensor lives on the backend's device (``comm.device``: the CPU, or one local accelerator per rank, so
an accelerator backend runs only the world sizes its host has devices for); results are checked on every rank
against references computed on the CPU. Ops, reduce ops and dtypes the backend does not declare are skipped with
the reason; everything declared must be right, including the asynchrony it claims (``concurrent_progress``) and,
on accelerators, the stream semantics of docs/streams.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from sagellm_protocol import ReduceOp

from sagellm_comm.errors import CommError, ErrorCode
from sagellm_comm.registry import get_comm_backend, list_comm_backends
from sagellm_comm.testing import tasks
from sagellm_comm.testing.reference import DTYPES
from sagellm_comm.testing.runner import ConformanceRunner, local_device_count

DTYPE_NAMES = list(DTYPES)
REDUCE_OPS = [op.value for op in ReduceOp]


class BackendConformance:
    """The conformance suite: subclass it in a test file and set ``backend`` to the registered backend name.

    ``world_sizes`` (default 1, 2, 4) are the world sizes every test runs on. The ``test_*`` methods are the tests
    (each op against CPU references, async handles, P2P ordering and tags, sub-groups, bad input); the ``need_*``
    helpers skip a test, with the reason, when the backend does not declare what it needs, for vendors' own tests too.
    """

    backend: ClassVar[str | None] = None
    world_sizes: ClassVar[tuple[int, ...]] = (1, 2, 4)

    @staticmethod
    def default_backends() -> list[str]:
        """Without ``backend`` or ``--comm-backend``: every installed backend that is available here."""
        return [s.name for s in list_comm_backends() if s.available] or ["<none available>"]

    # ---------------------------------------------------------------------------------------------- fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def backend_name(cls) -> str:
        """Fixture: the backend under test (the class's ``backend``)."""
        assert cls.backend is not None
        return cls.backend

    @pytest.fixture(scope="class")
    @classmethod
    def comm(cls, backend_name: str, world_size: int, comm_rank_pools: Any) -> ConformanceRunner:
        """Fixture: runs tasks on ``world_size`` ranks of the backend, one per class and world size; skips when the
        backend cannot be created here or the host has fewer devices than ranks."""
        try:
            probe = get_comm_backend(backend_name)
        except CommError as exc:
            pytest.skip(f"backend {backend_name!r} is not usable here: {exc.message}")
        device_type = probe.device.type
        if device_type != "cpu":
            count = local_device_count(device_type)
            if count < world_size:
                pytest.skip(
                    f"{backend_name} binds one {device_type} device per rank; world size {world_size} needs "
                    f"{world_size} and this host has {count}"
                )
        return ConformanceRunner(backend_name, world_size, probe.capabilities, comm_rank_pools, device_type)

    # ------------------------------------------------------------------------------------------------ helpers
    @staticmethod
    def need_op(comm: ConformanceRunner, op: str) -> None:
        """Skip unless the backend declares the operation ``op``."""
        if op not in comm.capabilities.ops:
            pytest.skip(f"{comm.backend} does not declare {op}")

    @staticmethod
    def need_dtype(comm: ConformanceRunner, dtype: str) -> None:
        """Skip unless the backend declares ``dtype`` (a name such as ``"float32"``)."""
        if DTYPES[dtype] not in comm.capabilities.dtypes:
            pytest.skip(f"{comm.backend} does not declare dtype {dtype}")

    @classmethod
    def need_reduce(cls, comm: ConformanceRunner, op: str, dtype: str) -> None:
        """Skip unless the backend declares reducing ``dtype`` with the reduce op ``op`` (e.g. ``"sum"``)."""
        cls.need_dtype(comm, dtype)
        if not comm.capabilities.supports_reduce(ReduceOp(op), DTYPES[dtype]):
            pytest.skip(f"{comm.backend} does not declare reduce op {op} on {dtype}")

    @staticmethod
    def need_peers(comm: ConformanceRunner, n: int = 2) -> None:
        """Skip when the world has fewer than ``n`` ranks."""
        if comm.world_size < n:
            pytest.skip(f"needs at least {n} ranks")

    # -------------------------------------------------------------------------------------------------- tests
    def test_world(self, comm: ConformanceRunner) -> None:
        assert comm.run(tasks.world) == [(r, comm.world_size) for r in range(comm.world_size)]

    @pytest.mark.parametrize("op", REDUCE_OPS)
    @pytest.mark.parametrize("dtype", DTYPE_NAMES)
    def test_all_reduce(self, comm: ConformanceRunner, dtype: str, op: str) -> None:
        self.need_op(comm, "all_reduce")
        self.need_reduce(comm, op, dtype)
        comm.run(tasks.all_reduce, dtype, op)

    def test_all_reduce_async(self, comm: ConformanceRunner) -> None:
        self.need_op(comm, "all_reduce")
        if not comm.capabilities.async_ops:
            pytest.skip(f"{comm.backend} does not declare async ops")
        comm.run(tasks.all_reduce, "float32", "sum", async_op=True)

    def test_all_reduce_non_contiguous(self, comm: ConformanceRunner) -> None:
        self.need_op(comm, "all_reduce")
        want = "correct" if comm.capabilities.non_contiguous else "rejected"
        assert comm.run(tasks.all_reduce_non_contiguous, comm.capabilities.non_contiguous) == [want] * comm.world_size

    @pytest.mark.parametrize("dtype", DTYPE_NAMES)
    def test_all_gather(self, comm: ConformanceRunner, dtype: str) -> None:
        self.need_op(comm, "all_gather")
        self.need_dtype(comm, dtype)
        comm.run(tasks.all_gather, dtype)

    @pytest.mark.parametrize("in_place", [False, True], ids=["out_of_place", "in_place"])
    @pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int64"])
    def test_all_gather_into_tensor(self, comm: ConformanceRunner, dtype: str, in_place: bool) -> None:
        self.need_op(comm, "all_gather_into_tensor")
        self.need_dtype(comm, dtype)
        comm.run(tasks.all_gather_into_tensor, dtype, in_place)

    @pytest.mark.parametrize("list_input", [False, True], ids=["tensor_input", "list_input"])
    @pytest.mark.parametrize("op", ["sum", "max", "avg"])
    @pytest.mark.parametrize("dtype", ["float32", "float16", "int32"])
    def test_reduce_scatter(self, comm: ConformanceRunner, dtype: str, op: str, list_input: bool) -> None:
        self.need_op(comm, "reduce_scatter")
        self.need_reduce(comm, op, dtype)
        comm.run(tasks.reduce_scatter, dtype, op, list_input)

    @pytest.mark.parametrize("dtype", DTYPE_NAMES)
    def test_broadcast(self, comm: ConformanceRunner, dtype: str) -> None:
        self.need_op(comm, "broadcast")
        self.need_dtype(comm, dtype)
        comm.run(tasks.broadcast, dtype)

    def test_broadcast_async(self, comm: ConformanceRunner) -> None:
        self.need_op(comm, "broadcast")
        if not comm.capabilities.async_ops:
            pytest.skip(f"{comm.backend} does not declare async ops")
        comm.run(tasks.broadcast, "float32", async_op=True)

    @pytest.mark.parametrize("op", ["sum", "min", "prod"])
    @pytest.mark.parametrize("dtype", ["float32", "int64"])
    def test_reduce(self, comm: ConformanceRunner, dtype: str, op: str) -> None:
        self.need_op(comm, "reduce")
        self.need_reduce(comm, op, dtype)
        comm.run(tasks.reduce, dtype, op)

    @pytest.mark.parametrize("dtype", ["float32", "int32"])
    def test_gather(self, comm: ConformanceRunner, dtype: str) -> None:
        self.need_op(comm, "gather")
        self.need_dtype(comm, dtype)
        comm.run(tasks.gather, dtype)

    @pytest.mark.parametrize("dtype", ["float32", "int32"])
    def test_scatter(self, comm: ConformanceRunner, dtype: str) -> None:
        self.need_op(comm, "scatter")
        self.need_dtype(comm, dtype)
        comm.run(tasks.scatter, dtype)

    @pytest.mark.parametrize("list_form", [False, True], ids=["single", "list"])
    @pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int64"])
    def test_all_to_all(self, comm: ConformanceRunner, dtype: str, list_form: bool) -> None:
        self.need_op(comm, "all_to_all")
        self.need_dtype(comm, dtype)
        comm.run(tasks.all_to_all, dtype, list_form)

    def test_barrier(self, comm: ConformanceRunner) -> None:
        self.need_op(comm, "barrier")
        assert comm.run(tasks.barrier) == list(range(comm.world_size))

    def test_p2p_ordering(self, comm: ConformanceRunner) -> None:
        self.need_op(comm, "send")
        self.need_op(comm, "recv")
        self.need_peers(comm)
        comm.run(tasks.p2p_ordering)

    def test_p2p_tags(self, comm: ConformanceRunner) -> None:
        self.need_op(comm, "send")
        self.need_peers(comm)
        if not comm.capabilities.p2p_tags:
            pytest.skip(f"{comm.backend} does not declare P2P tags")
        comm.run(tasks.p2p_tags)

    @pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int64"])
    def test_p2p_all_pairs(self, comm: ConformanceRunner, dtype: str) -> None:
        self.need_op(comm, "send")
        self.need_dtype(comm, dtype)
        self.need_peers(comm)
        comm.run(tasks.p2p_all_pairs, dtype)

    def test_batch_p2p_ring(self, comm: ConformanceRunner) -> None:
        self.need_op(comm, "batch_p2p")
        self.need_peers(comm)
        comm.run(tasks.batch_ring)

    def test_concurrent_progress(self, comm: ConformanceRunner) -> None:
        """An async op progresses while its caller never calls the backend (checked causally, see the task)."""
        self.need_op(comm, "all_reduce")
        self.need_peers(comm)
        if not comm.capabilities.concurrent_progress:
            pytest.skip(
                f"{comm.backend} does not claim concurrent_progress (async ops may run inside the call or "
                "inside wait())"
            )
        comm.run(tasks.concurrent_progress)

    def test_stream_order(self, comm: ConformanceRunner) -> None:
        """Accelerators: collectives follow the caller's current stream; wait() orders the stream,
        synchronize() the host."""
        self.need_op(comm, "all_reduce")
        if comm.device_type == "cpu":
            pytest.skip(f"stream semantics apply to accelerator backends; {comm.backend} runs on cpu")
        if not comm.capabilities.async_ops:
            pytest.skip(f"{comm.backend} does not declare async ops")
        comm.run(tasks.stream_order)

    def test_async_handles(self, comm: ConformanceRunner) -> None:
        for op in ("all_reduce", "all_gather", "barrier"):
            self.need_op(comm, op)
        if not comm.capabilities.async_ops:
            pytest.skip(f"{comm.backend} does not declare async ops")
        comm.run(tasks.async_mix)

    def test_sub_groups(self, comm: ConformanceRunner) -> None:
        if not comm.capabilities.sub_groups:
            pytest.skip(f"{comm.backend} does not declare sub-groups")
        self.need_peers(comm)
        comm.run(tasks.sub_groups)

    def test_bad_input(self, comm: ConformanceRunner) -> None:
        self.need_op(comm, "all_reduce")
        self.need_op(comm, "broadcast")
        results = comm.run(tasks.bad_input)
        assert all(len(r) >= 10 for r in results)

    def test_mismatched_collectives_raise_in_debug_mode(self, comm: ConformanceRunner) -> None:
        """SAGELLM_COMM_DEBUG=detail: a collective the ranks call differently (size, dtype, op, root, reduce op)
        raises COMM_RANK_MISMATCH on every rank instead of reaching the engine (wrong data, a hang, or gloo's
        process abort); the group stays usable. One world size is enough."""
        for op in ("all_reduce", "broadcast"):
            self.need_op(comm, op)
        self.need_peers(comm)
        if comm.world_size != min(n for n in self.world_sizes if n >= 2):
            pytest.skip("checked on the smallest multi-rank world size")
        for seen in comm.run(tasks.debug_mismatches):
            assert seen and all(line.endswith(": mismatch") for line in seen), seen

    def test_unknown_backend_name(self, backend_name: str) -> None:
        with pytest.raises(CommError) as info:
            get_comm_backend(backend_name + "-does-not-exist")
        assert info.value.code is ErrorCode.COMM_BACKEND_NOT_SUPPORTED
        assert backend_name in info.value.message, "the error lists the known backend names"
