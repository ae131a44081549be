"""sagellm_comm.benchmark: nccl-tests bandwidth formulas, latency statistics, size parsing, records."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sagellm_protocol import CollectiveOp, CommOperationMetrics

from sagellm_comm import BackendNotSupportedError, CommError, InvalidArgumentError
from sagellm_comm.benchmark import (
    DEFAULT_SIZES,
    AllReduceConfig,
    algbw_gbps,
    bus_factor,
    busbw_gbps,
    format_size,
    max_across_ranks,
    median,
    p99,
    parse_size,
    percentile,
    resolve_dtype,
    summarize_all_reduce,
    validate_all_reduce_config,
)

# ----------------------------------------------------------------------------------------------------------
# bandwidth formulas
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "n", "factor"),
    [
        ("all_reduce", 1, 0.0),
        ("all_reduce", 2, 1.0),
        ("all_reduce", 4, 1.5),
        ("all_reduce", 8, 1.75),
        (CollectiveOp.ALL_REDUCE, 8, 1.75),
        ("all_gather", 2, 0.5),
        ("all_gather", 4, 0.75),
        ("reduce_scatter", 8, 0.875),
        ("all_to_all", 4, 0.75),
        ("broadcast", 8, 1.0),
        ("reduce", 8, 1.0),
        ("sendrecv", 2, 1.0),
        ("ALL_REDUCE", 2, 1.0),
    ],
)
def test_bus_factor(op: str, n: int, factor: float) -> None:
    assert bus_factor(op, n) == pytest.approx(factor)


@pytest.mark.parametrize(
    ("op", "n"), [("frobnicate", 2), ("all_reduce", 0), ("all_reduce", True), ("all_reduce", 2.0)]
)
def test_bus_factor_rejects_bad_input(op: str, n: object) -> None:
    with pytest.raises(ValueError):
        bus_factor(op, n)  # type: ignore[arg-type]


def test_algbw_and_busbw() -> None:
    assert algbw_gbps(10**9, 1.0) == pytest.approx(1.0)  # GB = 1e9 bytes, not GiB
    assert algbw_gbps(4096, 1e-6) == pytest.approx(4.096)
    assert algbw_gbps(1 << 20, 0.0) == 0.0
    # nccl-tests: all_reduce busbw = algbw * 2(n-1)/n
    assert busbw_gbps(16 << 20, 2e-3, "all_reduce", 8) == pytest.approx((16 << 20) / 2e-3 / 1e9 * 1.75)
    assert busbw_gbps(16 << 20, 2e-3, "all_gather", 4) == pytest.approx((16 << 20) / 2e-3 / 1e9 * 0.75)
    assert busbw_gbps(1000, 1e-6, "broadcast", 4) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        algbw_gbps(-1, 1.0)


# ----------------------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------------------


def test_median_and_p99_on_known_data() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert median([7.0]) == 7.0
    data = list(range(1, 101))  # 1..100
    assert p99(data) == pytest.approx(99.01)  # linear interpolation, as numpy
    assert percentile(data, 0) == 1 and percentile(data, 100) == 100
    assert p99([5.0] * 10) == 5.0
    # one slow outlier in 50 iterations moves p99, not the median
    times = [1.0] * 49 + [100.0]
    assert median(times) == 1.0 and p99(times) > 50.0


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=60),
    st.floats(min_value=0, max_value=100),
)
def test_percentile_matches_numpy(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0, math.nan], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_rejects_bad_input(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        percentile(values, q)


def test_max_across_ranks() -> None:
    assert max_across_ranks([[1.0, 5.0, 3.0], [2.0, 4.0, 3.5]]) == [2.0, 5.0, 3.5]
    assert max_across_ranks([[1.0, 2.0]]) == [1.0, 2.0]
    with pytest.raises(ValueError):
        max_across_ranks([[1.0], [1.0, 2.0]])
    with pytest.raises(ValueError):
        max_across_ranks([])


# ----------------------------------------------------------------------------------------------------------
# sizes and dtypes
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4K", 4096),
        ("4k", 4096),
        ("64K", 65536),
        ("64KiB", 65536),
        ("64KB", 65536),
        ("1M", 1 << 20),
        ("16M", 16 << 20),
        ("1G", 1 << 30),
        ("0.5K", 512),
        ("4096", 4096),
        ("1", 1),
        (" 8 ", 8),
        ("2 MiB", 2 << 20),
        (4096, 4096),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["", "K", "4X", "-4K", "0", "0K", "1.3", "4K4", "four", "1e3", "4 K B x", True]
)
def test_parse_size_rejects_bad_input(text: object) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)  # type: ignore[arg-type]


def test_default_sizes() -> None:
    assert DEFAULT_SIZES == (4096, 65536, 1 << 20, 16 << 20)


@pytest.mark.parametrize(
    ("n", "text"),
    [(100, "100 B"), (4096, "4 KiB"), (1536, "1.5 KiB"), (1 << 20, "1 MiB"), (16 << 20, "16 MiB"),
     (1 << 30, "1 GiB")],
)
def test_format_size(n: int, text: str) -> None:
    assert format_size(n) == text


def test_resolve_dtype() -> None:
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("torch.float16") is torch.float16
    assert resolve_dtype(torch.int64) is torch.int64
    with pytest.raises(InvalidArgumentError, match="unknown dtype 'complex64'"):
        resolve_dtype("complex64")


# ----------------------------------------------------------------------------------------------------------
# records and config validation
# ----------------------------------------------------------------------------------------------------------


def test_summarize_all_reduce_takes_max_over_ranks_then_median() -> None:
    per_rank = [
        {"ours": [100e-6, 300e-6, 200e-6], "raw": [90e-6, 100e-6, 80e-6]},
        {"ours": [150e-6, 100e-6, 200e-6], "raw": [95e-6, 70e-6, 85e-6]},
    ]
    rec = summarize_all_reduce(1 << 20, per_rank, backend="gloo", dtype="float32", warmup=2, group_id="world")
    # per-iteration max: ours [150, 300, 200] us -> median 200; raw [95, 100, 85] -> median 95
    assert rec.median_us == pytest.approx(200.0)
    assert rec.raw_median_us == pytest.approx(95.0)
    assert rec.p99_us == pytest.approx(float(np.percentile([150, 300, 200], 99)))
    assert rec.ratio == pytest.approx(200 / 95)
    assert rec.overhead_us == pytest.approx(105.0)
    m = rec.metrics
    assert isinstance(m, CommOperationMetrics)
    assert m.op is CollectiveOp.ALL_REDUCE and m.group_id == "world"
    assert m.bytes_transferred == 1 << 20 and m.elapsed_ms == pytest.approx(0.2)
    assert m.algo_bandwidth_gbps == pytest.approx((1 << 20) / 200e-6 / 1e9)
    assert m.bandwidth_gbps == m.algo_bandwidth_gbps
    assert m.bus_bandwidth_gbps == pytest.approx(m.algo_bandwidth_gbps * 1.0)  # 2(n-1)/n with n=2
    d = rec.to_dict()
    keys = ("op", "group_id", "elapsed_ms", "bytes_transferred", "bus_bandwidth_gbps", "algo_bandwidth_gbps",
            "p99_us", "raw_median_us", "ratio", "overhead_us", "backend", "world_size")
    for key in keys:
        assert key in d
    assert d["op"] == "all_reduce" and d["world_size"] == 2


def test_summarize_without_raw() -> None:
    rec = summarize_all_reduce(4096, [{"ours": [1e-3], "raw": None}], backend="x", dtype="float32", warmup=0)
    assert rec.raw_median_us is None and rec.ratio is None and rec.overhead_us is None
    assert rec.metrics.bus_bandwidth_gbps == 0.0  # one rank moves nothing over the bus


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (AllReduceConfig(nproc=0), "nproc"),
        (AllReduceConfig(nproc=65), "nproc"),
        (AllReduceConfig(iters=0), "iters"),
        (AllReduceConfig(warmup=-1), "warmup"),
        (AllReduceConfig(compare="mpi"), "compare"),
        (AllReduceConfig(dtype="complex64"), "dtype"),
        (AllReduceConfig(sizes=()), "sizes"),
        (AllReduceConfig(sizes=(6,)), "multiple"),
    ],
)
def test_validate_config_rejects_bad_input(cfg: AllReduceConfig, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        validate_all_reduce_config(cfg)


def test_validate_config_unknown_backend() -> None:
    with pytest.raises(BackendNotSupportedError, match="unknown comm backend 'nope'") as info:
        validate_all_reduce_config(AllReduceConfig(backend="nope"))
    assert isinstance(info.value, CommError) and info.value.code.value == "comm_backend_not_supported"
