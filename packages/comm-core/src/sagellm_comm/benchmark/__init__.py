"""Collective benchmarks (nccl-tests' method and metrics) on any sagellm-comm backend and algorithm.

``run_all_reduce_benchmark(...)`` and ``run_overlap_benchmark(...)`` (docs/overlap.md) are the seed's Python API;
``BenchConfig`` + ``run_benchmark`` the general one;
``sagellm-comm bench`` and ``python -m benchmark.run_bench`` the command line. Metrics: time per op (median and
p99 over iterations of the per-iteration max over ranks), algbw = S/t, busbw = algbw x nccl-tests' factor;
``--check`` counts wrong elements against a locally computed reference.
"""

from sagellm_comm.benchmark.api import (
    BenchResult,
    Prepared,
    execute,
    prepare,
    run_all_reduce_benchmark,
    run_benchmark,
)
from sagellm_comm.benchmark.dtypes import DTYPES, resolve_dtype
from sagellm_comm.benchmark.memcopy import CopyBound, copy_bandwidth
from sagellm_comm.benchmark.metrics import (
    BUS_FACTORS,
    DEFAULT_SIZES,
    MessageSize,
    algbw_gbps,
    bus_factor,
    busbw_gbps,
    format_size,
    max_across_ranks,
    median,
    p99,
    parse_message_size,
    parse_size,
    percentile,
)
from sagellm_comm.benchmark.overlap import (
    DEFAULT_OVERLAP_OUTPUT_DIR,
    OVERLAP_FIELDS,
    SEED_OVERLAP_FIELDS,
    OverlapConfig,
    OverlapRecord,
    run_overlap,
    run_overlap_benchmark,
)
from sagellm_comm.benchmark.rank import UnitSpec
from sagellm_comm.benchmark.records import FIELDS, SEED_FIELDS, BenchRecord, RunInfo, merge_rank_results, summarize
from sagellm_comm.benchmark.sweep import (
    COMPARE_CHOICES,
    DEFAULT_MESSAGE_SIZES,
    DEFAULT_OUTPUT_DIR,
    BenchConfig,
    LocalSession,
    Plan,
    PoolSession,
    in_torchrun,
    plan_sweep,
    run_sweep,
)
from sagellm_comm.benchmark.workloads import SizePlan, plan_size

__all__ = [
    "BUS_FACTORS",
    "COMPARE_CHOICES",
    "DEFAULT_MESSAGE_SIZES",
    "DEFAULT_OUTPUT_DIR",
    "DEFAULT_OVERLAP_OUTPUT_DIR",
    "DEFAULT_SIZES",
    "DTYPES",
    "FIELDS",
    "OVERLAP_FIELDS",
    "SEED_FIELDS",
    "SEED_OVERLAP_FIELDS",
    "BenchConfig",
    "BenchRecord",
    "BenchResult",
    "CopyBound",
    "LocalSession",
    "MessageSize",
    "OverlapConfig",
    "OverlapRecord",
    "Plan",
    "PoolSession",
    "Prepared",
    "RunInfo",
    "SizePlan",
    "UnitSpec",
    "algbw_gbps",
    "bus_factor",
    "busbw_gbps",
    "copy_bandwidth",
    "execute",
    "format_size",
    "in_torchrun",
    "max_across_ranks",
    "median",
    "merge_rank_results",
    "p99",
    "parse_message_size",
    "parse_size",
    "percentile",
    "plan_size",
    "plan_sweep",
    "prepare",
    "resolve_dtype",
    "run_all_reduce_benchmark",
    "run_benchmark",
    "run_overlap",
    "run_overlap_benchmark",
    "run_sweep",
    "summarize",
]
