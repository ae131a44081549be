"""What the ranks of the overlap tests run (module-level functions, so the launcher can send them by name).

The tests need a CPU backend with collectives. The Gloo plugin is used when it is installed; the tox env
``overlap`` installs only the core and this package, so there the tasks register a backend of their own on the
core's torch.distributed engine with torch's Gloo (the same process group the Gloo plugin wraps).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import torch

from sagellm_comm.capabilities import ALL_OPS, FLOAT_DTYPES, INT_DTYPES, Capabilities
from sagellm_comm.engines.torch_distributed import TorchDistributedBackend
from sagellm_comm.registry import get_comm_backend, is_comm_backend_available, register_comm_backend

TEST_BACKEND = "overlap-test"


class OverlapTestBackend(TorchDistributedBackend):
    """torch.distributed Gloo through the core engine: used only when no Gloo plugin is installed."""

    name = TEST_BACKEND
    torch_backend = "gloo"
    capabilities = Capabilities(
        ops=ALL_OPS,
        dtypes=FLOAT_DTYPES | INT_DTYPES,
        devices=frozenset({"cpu"}),
        reduce_support=Capabilities.reduce_table(FLOAT_DTYPES, INT_DTYPES),
        concurrent_progress=True,
    )


def backend_name() -> str:
    if is_comm_backend_available("gloo"):
        return "gloo"
    if not is_comm_backend_available(TEST_BACKEND):
        register_comm_backend(TEST_BACKEND, OverlapTestBackend, description="tests only: Gloo through the core engine")
    return TEST_BACKEND


def _comm() -> Any:
    comm = get_comm_backend(backend_name())
    comm.init_process_group(timeout=60.0)
    return comm


def progress_during_compute(nbytes: int, compute_s: float) -> dict[str, Any]:
    """Rank 0 submits an all_reduce on a communication stream, then computes (matmuls) for ``compute_s`` without
    touching the stream; it records whether the all_reduce had completed by the end of the compute, and when.
    The other ranks take part with a blocking all_reduce."""
    from sagellm_comm_overlap import comm_stream

    comm = _comm()
    try:
        data = torch.ones(nbytes // 4)
        comm.barrier()
        if comm.get_rank() != 0:
            comm.all_reduce(data)
            comm.barrier()
            return {"rank": comm.get_rank(), "ok": bool(torch.all(data == comm.get_world_size()))}
        a, b = torch.rand(128, 128), torch.rand(128, 128)
        with comm_stream(comm.device) as stream:
            event = stream.submit(lambda: comm.all_reduce(data), name="all_reduce")
            start = time.monotonic()
            matmuls = 0
            while time.monotonic() - start < compute_s:
                torch.mm(a, b)
                matmuls += 1
            done_by_end = event.query()  # before anything waits on the event
            end = time.monotonic()
            event.wait(60.0)
        comm.barrier()
        return {
            "rank": 0,
            "start": start,
            "done_at": event.done_at,
            "end": end,
            "done_by_end": done_by_end,
            "matmuls": matmuls,
            "ok": bool(torch.all(data == comm.get_world_size())),
        }
    finally:
        comm.destroy()


def _row_inputs(world: int, rank: int, rows: int, in_features: int, out_features: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(rows, in_features, generator=gen)
    w = torch.randn(out_features, in_features, generator=gen)
    b = torch.randn(out_features, generator=gen)
    cols = torch.tensor_split(torch.arange(in_features), world)[rank]
    return x, w, b, x[:, cols].contiguous(), w[:, cols].contiguous()


def tp_row(chunks: int, rows: int = 37, in_features: int = 64, out_features: int = 48) -> dict[str, Any]:
    """row_parallel_linear: overlapped (chunks, 2 in flight) vs the same chunks without overlap (1 in flight),
    vs the plain layer (chunks=1) and vs the full layer computed on one rank."""
    from sagellm_comm_overlap import comm_stream, row_parallel_linear

    comm = _comm()
    try:
        world, rank = comm.get_world_size(), comm.get_rank()
        x, w, b, x_local, w_local = _row_inputs(world, rank, rows, in_features, out_features)
        with comm_stream(comm.device) as stream:
            overlapped = row_parallel_linear(x_local, w_local, comm, bias=b, chunks=chunks, stream=stream)
            sequential = row_parallel_linear(
                x_local, w_local, comm, bias=b, chunks=chunks, stream=stream, max_in_flight=1
            )
        plain = row_parallel_linear(x_local, w_local, comm, bias=b)
        full = x @ w.t() + b
        return {
            "bitwise": torch.equal(overlapped, sequential),
            "plain_close": torch.allclose(overlapped, plain, rtol=1e-5, atol=1e-4),
            "full_close": torch.allclose(overlapped, full, rtol=1e-5, atol=1e-4),
            "shape": tuple(overlapped.shape),
            "digest": float(overlapped.double().sum()),
        }
    finally:
        comm.destroy()


def tp_column(chunks: int, rows_local: int = 19, in_features: int = 40, out_features: int = 64) -> dict[str, Any]:
    """all_gather_column_parallel_linear, the same comparisons as tp_row."""
    from sagellm_comm_overlap import all_gather_column_parallel_linear, comm_stream

    comm = _comm()
    try:
        world, rank = comm.get_world_size(), comm.get_rank()
        gen = torch.Generator().manual_seed(99)
        x = torch.randn(world * rows_local, in_features, generator=gen)
        w = torch.randn(out_features, in_features, generator=gen)
        b = torch.randn(out_features, generator=gen)
        outs = torch.tensor_split(torch.arange(out_features), world)[rank]
        x_local = x[rank * rows_local : (rank + 1) * rows_local].contiguous()
        w_local, b_local = w[outs].contiguous(), b[outs].contiguous()
        with comm_stream(comm.device) as stream:
            overlapped = all_gather_column_parallel_linear(
                x_local, w_local, comm, bias=b_local, chunks=chunks, stream=stream
            )
            sequential = all_gather_column_parallel_linear(
                x_local, w_local, comm, bias=b_local, chunks=chunks, stream=stream, max_in_flight=1
            )
        plain = all_gather_column_parallel_linear(x_local, w_local, comm, bias=b_local)
        full = (x @ w.t() + b)[:, outs]
        return {
            "bitwise": torch.equal(overlapped, sequential),
            "plain_close": torch.allclose(overlapped, plain, rtol=1e-5, atol=1e-4),
            "full_close": torch.allclose(overlapped, full, rtol=1e-5, atol=1e-4),
            "shape": tuple(overlapped.shape),
        }
    finally:
        comm.destroy()


def pipeline_stage_failure(fail_chunk: int, chunks: int = 6) -> dict[str, Any]:
    """A comm stage that fails on one chunk (after its real all_reduce, on every rank alike): the caller gets a
    PipelineError naming the stage and chunk, and no stream thread is left running."""
    from sagellm_comm_overlap import COMM, MultiStreamPipeline, PipelineError, Stage

    comm = _comm()
    try:

        def reduce(x: torch.Tensor) -> torch.Tensor:
            comm.all_reduce(x)
            if int(x[0].item()) == fail_chunk * comm.get_world_size():
                raise ValueError(f"bad chunk {fail_chunk}")
            return x

        stages = [
            Stage("scale", lambda x: x * 1.0),
            Stage("all_reduce", reduce, on=COMM),
            Stage("add", lambda x: x + 1),
        ]
        before = {t.name for t in threading.enumerate()}
        caught: dict[str, Any] = {}
        with MultiStreamPipeline(stages, max_in_flight=2, timeout_s=60.0) as pipe:
            try:
                pipe.run([torch.full((1024,), float(i)) for i in range(chunks)])
            except PipelineError as exc:
                caught = {
                    "stage": exc.stage,
                    "chunk": exc.chunk,
                    "chunks": exc.chunks,
                    "message": str(exc),
                    "cause": type(exc.__cause__).__name__,
                    "code": exc.code.value,
                }
            stream = pipe.stream
        comm.barrier()
        left = [t.name for t in threading.enumerate() if t.name not in before and t.is_alive()]
        return {**caught, "threads_left": left, "stream_alive": stream.alive}
    finally:
        comm.destroy()
