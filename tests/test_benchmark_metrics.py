"""sagellm_comm.benchmark: nccl-tests bandwidth formulas, latency statistics, size parsing, size planning,
records, the sweep's validation, result files and chart series (no ranks started here)."""

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
    FIELDS,
    SEED_FIELDS,
    BenchConfig,
    MessageSize,
    RunInfo,
    algbw_gbps,
    bus_factor,
    busbw_gbps,
    format_size,
    max_across_ranks,
    median,
    merge_rank_results,
    p99,
    parse_message_size,
    parse_size,
    percentile,
    plan_size,
    plan_sweep,
    resolve_dtype,
    summarize,
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


@pytest.mark.parametrize(("op", "n"), [("frobnicate", 2), ("all_reduce", 0), ("all_reduce", True), ("all_reduce", 2.0)])
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


@pytest.mark.parametrize("text", ["", "K", "4X", "-4K", "0", "0K", "1.3", "4K4", "four", "1e3", "4 K B x", True])
def test_parse_size_rejects_bad_input(text: object) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)  # type: ignore[arg-type]


def test_default_sizes() -> None:
    assert DEFAULT_SIZES == (4096, 65536, 1 << 20, 16 << 20)


@pytest.mark.parametrize(
    ("n", "text"),
    [(100, "100 B"), (4096, "4 KiB"), (1536, "1.5 KiB"), (1 << 20, "1 MiB"), (16 << 20, "16 MiB"), (1 << 30, "1 GiB")],
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
# message sizes and size planning
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1024, MessageSize(1024, "elements")),  # the seed: message_sizes are element counts
        ("1024", MessageSize(1024, "elements")),
        ("4K", MessageSize(4096, "bytes")),
        ("512B", MessageSize(512, "bytes")),
        ("1MiB", MessageSize(1 << 20, "bytes")),
    ],
)
def test_parse_message_size(value: object, expected: MessageSize) -> None:
    assert parse_message_size(value) == expected  # type: ignore[arg-type]


def test_message_size_bytes() -> None:
    assert MessageSize(1024, "elements").to_bytes(4) == 4096
    assert MessageSize(1024, "elements").to_bytes(2) == 2048
    assert MessageSize(4096, "bytes").to_bytes(8) == 4096
    for bad in ("0", 0, "-1", "4X", True):
        with pytest.raises(ValueError):
            parse_message_size(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("op", "requested", "n", "nbytes", "in_numel", "out_numel", "rounded"),
    [
        ("all_reduce", 4096, 4, 4096, 1024, 1024, False),
        ("all_reduce", 4098, 4, 4096, 1024, 1024, True),  # not whole float32 elements
        ("broadcast", 2, 2, 4, 1, 1, True),  # at least one element
        ("all_gather", 4096, 4, 4096, 256, 1024, False),  # S is the gathered buffer
        ("reduce_scatter", 4096, 4, 4096, 1024, 256, False),
        ("reduce_scatter", 4000, 3, 3996, 999, 333, True),  # 4000 B does not split over 3 ranks x 4 B
        ("reduce_scatter", 4, 3, 12, 3, 1, True),  # at least one element per rank
        ("all_to_all", 4000, 3, 3996, 999, 999, True),
        ("sendrecv", 4000, 3, 4000, 1000, 1000, False),
    ],
)
def test_plan_size(op: str, requested: int, n: int, nbytes: int, in_numel: int, out_numel: int, rounded: bool) -> None:
    plan = plan_size(op, requested, n, 4, "float32")
    assert (plan.nbytes, plan.in_numel, plan.out_numel) == (nbytes, in_numel, out_numel)
    assert (plan.note is not None) == rounded
    if rounded:
        assert f"using {nbytes} B" in plan.note and str(requested) in plan.note


# ----------------------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------------------

RUN = RunInfo(
    backend="gloo",
    backend_type="gloo",
    world_size=2,
    dtype="float32",
    timestamp="2026-01-01T00:00:00+00:00",
    topology_source="discover:core",
)


def test_merge_takes_max_over_ranks_per_iteration_and_sums_wrong() -> None:
    per_rank = [
        {"ours": [100e-6, 300e-6, 200e-6], "raw": [90e-6, 100e-6, 80e-6], "wrong": 0},
        {"ours": [150e-6, 100e-6, 200e-6], "raw": [95e-6, 70e-6, 85e-6], "wrong": 3},
    ]
    merged = merge_rank_results(per_rank)
    assert merged["ours"] == [150e-6, 300e-6, 200e-6]
    assert merged["raw"] == [95e-6, 100e-6, 85e-6]
    assert merged["wrong"] == 3
    assert merge_rank_results([{"ours": [1.0], "raw": None, "wrong": None}]) == {
        "ours": [1.0],
        "raw": None,
        "wrong": None,
        "decided": None,
    }
    decided = ["hierarchical", "cost-model", "why"]  # a backend that decides per call: rank 0's decision
    assert merge_rank_results([{**per_rank[0], "decided": decided}, per_rank[1]])["decided"] == decided


def test_summarize_record_fields() -> None:
    merged = {"ours": [150e-6, 300e-6, 200e-6], "raw": [95e-6, 100e-6, 85e-6], "wrong": 0}
    rec = summarize(
        merged,
        op="all_reduce",
        algo="ring",
        run=RUN,
        nbytes=1 << 20,
        requested_bytes=1 << 20,
        count=(1 << 20) // 4,
        warmup=2,
        calls=1,
        selection_rule_id="explicit",
        selection_reason="asked",
    )
    assert rec.latency_ms == pytest.approx(0.2)  # median of the per-iteration max
    assert rec.p99_latency_ms == pytest.approx(float(np.percentile([150, 300, 200], 99)) / 1e3)
    assert rec.raw_latency_ms == pytest.approx(0.095)
    assert rec.speedup_vs_raw == pytest.approx(0.095 / 0.2)
    m = rec.metrics
    assert isinstance(m, CommOperationMetrics) and m.op is CollectiveOp.ALL_REDUCE and m.group_id == "world"
    assert m.bytes_transferred == 1 << 20 and m.elapsed_ms == pytest.approx(0.2)
    assert m.algo_bandwidth_gbps == pytest.approx((1 << 20) / 200e-6 / 1e9) == m.bandwidth_gbps
    assert m.bus_bandwidth_gbps == pytest.approx(m.algo_bandwidth_gbps)  # 2(n-1)/n with n=2
    row = rec.to_row()
    assert tuple(row) == FIELDS and tuple(row)[: len(SEED_FIELDS)] == SEED_FIELDS
    assert row["bytes"] == 1 << 20 and row["algo_id"] == "ring" and row["backend_kind"] == "gloo"
    assert row["op_type"] == "all_reduce" and row["data_type"] == "float32" and row["wrong"] == 0
    assert row["raw_engine"] is None  # RUN names no raw engine


def test_a_backend_that_decides_per_call_names_its_path_rule_and_reason() -> None:
    merged = {"ours": [1e-3], "decided": ["hierarchical", "cost-model", "hierarchical: predicted 1 ms vs flat 2 ms"]}
    rec = summarize(
        merged,
        op="all_reduce",
        algo="native",
        run=RUN,
        nbytes=4096,
        requested_bytes=4096,
        count=1024,
        warmup=0,
        calls=1,
        selection_rule_id="backend-decides",
        selection_reason="it chooses per call",
    )
    row = rec.to_row()
    assert row["algo_id"] == "native/hierarchical" and row["selection_rule_id"] == "gloo:cost-model"
    assert row["selection_reason"] == "hierarchical: predicted 1 ms vs flat 2 ms"


def test_summarize_sendrecv_uses_the_protocol_send_op() -> None:
    rec = summarize(
        {"ours": [1e-3]},
        op="sendrecv",
        algo="native",
        run=RUN,
        nbytes=4096,
        requested_bytes=4096,
        count=1024,
        warmup=0,
        calls=1,
        selection_rule_id="default",
        selection_reason="",
    )
    assert rec.metrics.op is CollectiveOp.SEND and rec.op_type == "sendrecv"
    assert rec.bus_bandwidth_gbps == pytest.approx(rec.bandwidth_gbps)  # factor 1
    assert rec.raw_latency_ms is None and rec.speedup_vs_raw is None and rec.wrong is None


# ----------------------------------------------------------------------------------------------------------
# the sweep's validation (no ranks start)
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (BenchConfig(iters=0), "iters"),
        (BenchConfig(warmup=-1), "warmup"),
        (BenchConfig(compare="mpi"), "compare"),
        (BenchConfig(dtype="complex64"), "dtype"),
        (BenchConfig(sizes=()), "at least one"),
        (BenchConfig(ops=("frob",)), "unknown op"),
        (BenchConfig(algos=("nope",)), "unknown algorithm"),
        (BenchConfig(algos=("ring",), ops=("broadcast",)), "has no broadcast"),
        (BenchConfig(root=2), "root"),
        (BenchConfig(sizes=("4X",)), "invalid size"),
    ],
)
def test_plan_rejects_bad_input(cfg: BenchConfig, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        plan_sweep(cfg, 2)


def test_plan_unknown_backend() -> None:
    with pytest.raises(BackendNotSupportedError, match="unknown comm backend 'nope'") as info:
        plan_sweep(BenchConfig(backends=("nope",)), 2)
    assert isinstance(info.value, CommError) and info.value.code.value == "comm_backend_not_supported"


def test_plan_resolves_units_and_dedupes_sizes() -> None:
    plan = plan_sweep(
        BenchConfig(
            backends=("gloo",), ops=("all_reduce", "all_gather"), algos=("native", "ring"), sizes=(256, "1K", "1001")
        ),
        3,
    )
    keys = [(u.spec.op, u.spec.algo, u.spec.plan.nbytes) for u in plan.units]
    # 256 elements and 1K are one message; 1001 elements = 4004 B, rounded to 3996 B for all_gather on 3 ranks
    assert keys == [
        ("all_reduce", "native", 1024),
        ("all_reduce", "ring", 1024),
        ("all_reduce", "native", 4004),
        ("all_reduce", "ring", 4004),
        ("all_gather", "native", 1020),
        ("all_gather", "ring", 1020),
        ("all_gather", "native", 3996),
        ("all_gather", "ring", 3996),
    ]
    assert all(u.selection.rule_id == "explicit" for u in plan.units)
    assert len(plan.notes) == 2 and all(n.startswith("all_gather:") for n in plan.notes)


# ----------------------------------------------------------------------------------------------------------
# result files and chart series
# ----------------------------------------------------------------------------------------------------------


def test_result_files_are_complete_or_absent(tmp_path) -> None:
    from datetime import datetime

    from sagellm_comm.benchmark.export import check_output_dir, write_results

    rec = summarize(
        {"ours": [1e-3], "raw": [2e-3]},
        op="all_reduce",
        algo="native",
        run=RUN,
        nbytes=4096,
        requested_bytes=4096,
        count=1024,
        warmup=0,
        calls=1,
        selection_rule_id="default",
        selection_reason="x",
    )
    stamp = datetime(2026, 1, 2, 3, 4, 5)
    j1, c1 = write_results(tmp_path, "all_reduce", 2, [rec.to_row()], {"k": 1}, stamp)
    j2, _ = write_results(tmp_path, "all_reduce", 2, [rec.to_row()], {"k": 1}, stamp)
    assert j1.name == "all_reduce_ws2_20260102_030405.json" and c1.suffix == ".csv"
    assert j2.name == "all_reduce_ws2_20260102_030405_2.json"  # never overwrites an earlier run
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    assert c1.read_text().splitlines()[0] == ",".join(FIELDS)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InvalidArgumentError, match="not writable"):
        check_output_dir(blocker / "sub")


def test_chart_series_labels() -> None:
    from sagellm_comm.benchmark.plot import series

    def row(backend: str, algo: str, nbytes: int, source: str, raw: float | None = None) -> dict:
        return {
            "op_type": "all_reduce",
            "backend_kind": backend,
            "algo_id": algo,
            "world_size": 2,
            "bytes": nbytes,
            "latency_ms": 1.0,
            "bus_bandwidth_gbps": 2.0,
            "raw_latency_ms": raw,
            "raw_engine": "torch.distributed/gloo",
            "_source": source,
        }

    rows = [
        row("gloo", "native", 8, "a", raw=2.0),
        row("gloo", "native", 4, "a", raw=2.0),
        row("shm", "native", 4, "a"),
        row("gloo", "ring", 4, "a", raw=4.0),
    ]
    lines = series(rows)["all_reduce"]
    assert set(lines) == {"gloo/native", "shm/native", "gloo/ring", "raw torch.distributed/gloo (vs gloo)"}
    assert [p[0] for p in lines["gloo/native"]] == [4, 8]  # sorted by size
    assert lines["raw torch.distributed/gloo (vs gloo)"] == [(4, 2.0, 1.0), (8, 2.0, 1.0)]  # busbw scales by time
    two_runs = series([row("gloo", "native", 4, "a"), row("gloo", "native", 4, "b")])["all_reduce"]
    assert set(two_runs) == {"gloo/native [a]", "gloo/native [b]"}
