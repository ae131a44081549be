"""Tensor-parallel building blocks that hide their communication behind their own compute by chunking rows.

- :func:`row_parallel_linear`: the layer that ends a tensor-parallel block (attention output, MLP down
  projection). Each rank holds the columns of ``x`` and the matching slice of the weight's input dimension;
  ``y = all_reduce(x @ W.T) + bias``. Chunked, chunk k's all_reduce runs while chunk k+1's matmul computes.
- :func:`all_gather_column_parallel_linear`: the layer that starts one under sequence parallelism. Each rank holds
  a slice of the rows (tokens) of ``x`` and a slice of the weight's output dimension; ``y = all_gather(x) @ W.T +
  bias``. Chunked, chunk k+1's all_gather runs while chunk k's matmul computes.

``chunks=1`` is the plain, non-overlapped layer. ``max_in_flight`` defaults to every chunk (each chunk's output is
part of the result, so bounding them saves no memory). With ``chunks`` > 1 every rank must use the same ``chunks`` (the
collectives are matched chunk by chunk). The result of a chunked call equals, bitwise, the same chunks computed one
after the other without overlap (``max_in_flight=1``): the overlap changes when the work runs, not what it computes.
Against ``chunks=1`` it agrees to floating-point rounding (a matmul may block its sums differently by row count).
"""

from __future__ import annotations

from typing import Any

import torch

from sagellm_comm.errors import InvalidArgumentError
from sagellm_comm_overlap.pipeline import COMM, MultiStreamPipeline, Stage
from sagellm_comm_overlap.streams import CommStream

__all__ = ["all_gather_column_parallel_linear", "row_parallel_linear"]


def _chunk_count(chunks: Any, rows: int) -> int:
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise InvalidArgumentError(f"chunks must be an int >= 1, got {chunks!r}")
    if rows == 0:
        raise InvalidArgumentError("the input has no rows to compute")
    return min(chunks, rows)


def _check_linear(x: Any, weight: Any, what: str) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise InvalidArgumentError(f"{what}: x and weight must be tensors")
    if weight.dim() != 2 or x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise InvalidArgumentError(
            f"{what}: x's last dimension ({tuple(x.shape)}) must match weight [out, in] ({tuple(weight.shape)})"
        )


def _run(
    stages: list[Stage],
    parts: list[torch.Tensor],
    device: torch.device,
    stream: CommStream | None,
    max_in_flight: int | None,
) -> list[Any]:
    if len(parts) == 1:  # the plain layer: nothing to overlap with
        value: Any = parts[0]
        for stage in stages:
            value = stage.fn(value)
        return [value]
    depth = len(parts) if max_in_flight is None else max_in_flight  # the outputs are kept anyway: no need to bound
    with MultiStreamPipeline(stages, device=device, stream=stream, max_in_flight=depth) as pipe:
        return pipe.run(parts)


def row_parallel_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    comm: Any,
    *,
    bias: torch.Tensor | None = None,
    chunks: int = 1,
    group: Any = None,
    stream: CommStream | None = None,
    max_in_flight: int | None = None,
) -> torch.Tensor:
    """``all_reduce(x @ weight.T) (+ bias)``: ``x`` is ``[..., in_local]``, ``weight`` ``[out, in_local]`` (this
    rank's slice of the input dimension); returns ``[..., out]``, the same on every rank. Each chunk's matmul writes
    its rows of the output directly, and the all_reduce works on them in place (no concatenation)."""
    _check_linear(x, weight, "row_parallel_linear")
    lead, out_features = x.shape[:-1], weight.shape[0]
    rows = x.reshape(-1, x.shape[-1])
    y = torch.empty((rows.shape[0], out_features), dtype=x.dtype, device=x.device)
    n = _chunk_count(chunks, rows.shape[0])
    parts = list(zip(torch.tensor_split(rows, n), torch.tensor_split(y, n), strict=True))
    w_t = weight.t()

    def matmul(part: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x_rows, y_rows = part
        return torch.mm(x_rows, w_t, out=y_rows)

    def all_reduce(y_rows: torch.Tensor) -> torch.Tensor:
        comm.all_reduce(y_rows, op="sum", group=group)
        return y_rows

    _run([Stage("matmul", matmul), Stage("all_reduce", all_reduce, on=COMM)], parts, x.device, stream, max_in_flight)
    if bias is not None:
        y.add_(bias)
    return y.reshape(*lead, out_features)


def all_gather_column_parallel_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    comm: Any,
    *,
    bias: torch.Tensor | None = None,
    chunks: int = 1,
    group: Any = None,
    stream: CommStream | None = None,
    max_in_flight: int | None = None,
) -> torch.Tensor:
    """``all_gather(x) @ weight.T (+ bias)``: ``x`` is ``[rows_local, in]`` (this rank's rows, the same count on
    every rank), ``weight`` ``[out_local, in]``; returns ``[world * rows_local, out_local]`` with the rows in rank
    order. Each chunk's matmul writes, per source rank, its rows of the output directly (no concatenation)."""
    _check_linear(x, weight, "all_gather_column_parallel_linear")
    if x.dim() != 2:
        raise InvalidArgumentError(f"all_gather_column_parallel_linear: x must be [rows, in], got {tuple(x.shape)}")
    world, rows_local = comm.get_world_size(group), x.shape[0]
    y = torch.empty((world * rows_local, weight.shape[0]), dtype=x.dtype, device=x.device)
    pieces = torch.tensor_split(x, _chunk_count(chunks, rows_local), dim=0)
    offsets = [0]
    for p in pieces[:-1]:
        offsets.append(offsets[-1] + p.shape[0])
    parts = [(p.contiguous(), off) for p, off in zip(pieces, offsets, strict=True)]
    w_t = weight.t()

    def all_gather(part: tuple[torch.Tensor, int]) -> tuple[torch.Tensor, int]:
        piece, offset = part
        gathered = torch.empty((world * piece.shape[0], piece.shape[1]), dtype=piece.dtype, device=piece.device)
        comm.all_gather_into_tensor(gathered, piece, group=group)
        return gathered, offset

    def matmul(part: tuple[torch.Tensor, int]) -> None:
        gathered, offset = part
        n = gathered.shape[0] // world
        for r in range(world):  # rank r's rows of this chunk land at rank r's block of the output
            start = r * rows_local + offset
            torch.mm(gathered[r * n : (r + 1) * n], w_t, out=y[start : start + n])

    _run([Stage("all_gather", all_gather, on=COMM), Stage("matmul", matmul)], parts, x.device, stream, max_in_flight)
    if bias is not None:
        y.add_(bias)
    return y
