"""Bandwidth formulas, latency statistics and size parsing shared by the collective benchmarks.

Bandwidths follow nccl-tests (``doc/PERFORMANCE.md``): ``algbw = bytes / time`` and
``busbw = algbw * factor``, where the factor turns the algorithm bandwidth into the bandwidth each link of a
ring must sustain, so numbers are comparable across world sizes. GB means 1e9 bytes. ``bytes`` is nccl-tests'
size S: the whole buffer (for all_gather, reduce_scatter and all_to_all: per-rank count x ranks x dtype size).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sagellm_protocol import CollectiveOp

__all__ = [
    "BUS_FACTORS",
    "DEFAULT_SIZES",
    "MessageSize",
    "algbw_gbps",
    "bus_factor",
    "busbw_gbps",
    "format_size",
    "max_across_ranks",
    "median",
    "p99",
    "parse_message_size",
    "parse_size",
    "percentile",
]

# 4 KiB, 64 KiB, 1 MiB, 16 MiB
DEFAULT_SIZES: tuple[int, ...] = (4 << 10, 64 << 10, 1 << 20, 16 << 20)
"""The default sweep in bytes: 4 KiB, 64 KiB, 1 MiB, 16 MiB."""


def _ring(n: int) -> float:
    return (n - 1) / n


# op -> factor(world_size); nccl-tests' busbw correction per collective
BUS_FACTORS: dict[str, Callable[[int], float]] = {
    CollectiveOp.ALL_REDUCE.value: lambda n: 2.0 * _ring(n),
    CollectiveOp.ALL_GATHER.value: _ring,
    CollectiveOp.REDUCE_SCATTER.value: _ring,
    CollectiveOp.ALL_TO_ALL.value: _ring,
    CollectiveOp.BROADCAST.value: lambda n: 1.0,
    CollectiveOp.REDUCE.value: lambda n: 1.0,
    "sendrecv": lambda n: 1.0,
    CollectiveOp.SEND.value: lambda n: 1.0,
    CollectiveOp.RECV.value: lambda n: 1.0,
}
"""nccl-tests' bus-bandwidth factor per op as a function of the rank count n (all_reduce 2(n-1)/n, all_gather,
reduce_scatter and all_to_all (n-1)/n, the rest 1): busbw = algbw x factor, comparable across rank counts."""


def bus_factor(op: CollectiveOp | str, world_size: int) -> float:
    """busbw / algbw for ``op`` on ``world_size`` ranks: all_reduce 2(n-1)/n; all_gather, reduce_scatter and
    all_to_all (n-1)/n; broadcast, reduce and send/recv 1."""
    key = op.value if isinstance(op, CollectiveOp) else str(op).strip().lower()
    if key not in BUS_FACTORS:
        raise ValueError(f"no bus-bandwidth factor for op {op!r}; known ops: {', '.join(sorted(BUS_FACTORS))}")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    return float(BUS_FACTORS[key](world_size))


def algbw_gbps(nbytes: int, seconds: float) -> float:
    """Algorithm bandwidth in GB/s (1e9 bytes per second): ``nbytes / seconds``; 0 for a time <= 0."""
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    if not seconds > 0:
        return 0.0
    return nbytes / seconds / 1e9


def busbw_gbps(nbytes: int, seconds: float, op: CollectiveOp | str, world_size: int) -> float:
    """Bus bandwidth in GB/s: ``algbw * bus_factor(op, world_size)``."""
    return algbw_gbps(nbytes, seconds) * bus_factor(op, world_size)


# ----------------------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------------------
def _sorted_values(values: Iterable[float]) -> list[float]:
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("need at least one value")
    if any(math.isnan(v) for v in data):
        raise ValueError("values contain NaN")
    return data


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    data = _sorted_values(values)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    frac = pos - lo
    return data[lo] + (data[hi] - data[lo]) * frac


def median(values: Iterable[float]) -> float:
    """The 50th percentile of ``values`` (``percentile``'s interpolation)."""
    return percentile(values, 50.0)


def p99(values: Iterable[float]) -> float:
    """The 99th percentile of ``values``: the tail the benchmark tables report beside the median."""
    return percentile(values, 99.0)


def max_across_ranks(per_rank: Sequence[Sequence[float]]) -> list[float]:
    """Iteration ``i`` of a collective takes as long as its slowest rank: element-wise max over the ranks."""
    if not per_rank:
        raise ValueError("need the times of at least one rank")
    lengths = {len(t) for t in per_rank}
    if len(lengths) != 1:
        raise ValueError(f"ranks reported different numbers of iterations: {sorted(lengths)}")
    return [max(vals) for vals in zip(*per_rank, strict=True)]


# ----------------------------------------------------------------------------------------------------------
# sizes
# ----------------------------------------------------------------------------------------------------------
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """A byte count from ``4K``, ``64KiB``, ``1M``, ``16MB``, ``0.5K`` or ``4096``.

    Suffixes are binary (K = 1024, as nccl-tests reads them); the result must be a whole number of bytes >= 1.
    Raises ``ValueError`` with a message naming the bad value.
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid size {text!r}")
    if isinstance(text, int):
        value = text
    else:
        m = _SIZE_RE.match(str(text))
        if m is None:
            raise ValueError(f"invalid size {text!r}: use a byte count or a number with K, M or G (e.g. 4K, 1M)")
        exact = float(m.group(1)) * _UNITS[m.group(2).upper()]
        if exact != int(exact):
            raise ValueError(f"invalid size {text!r}: it is not a whole number of bytes ({exact})")
        value = int(exact)
    if value < 1:
        raise ValueError(f"invalid size {text!r}: must be at least 1 byte")
    return value


def format_size(nbytes: int) -> str:
    """``4096`` -> ``4 KiB``, ``1536`` -> ``1.5 KiB``, ``100`` -> ``100 B``."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class MessageSize:
    """A requested message size: ``value`` elements of the benchmark's dtype, or ``value`` bytes."""

    value: int
    unit: str  # "elements" | "bytes"

    def to_bytes(self, itemsize: int) -> int:
        """The size in bytes: an element count times ``itemsize``, or the byte count itself."""
        return self.value * itemsize if self.unit == "elements" else self.value

    def __str__(self) -> str:
        return f"{self.value} elements" if self.unit == "elements" else format_size(self.value)


def parse_message_size(value: str | int | MessageSize) -> MessageSize:
    """The seed's ``--message-sizes``: a bare number is an element count (``1024`` = 1024 float32 = 4 KiB), a number
    with a unit is bytes (``4K``, ``1MiB``, ``512B``). Ints (the Python API) are element counts."""
    if isinstance(value, MessageSize):
        return value
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int) or str(value).strip().isdigit():
        count = int(value)
        if count < 1:
            raise ValueError(f"invalid size {value!r}: an element count must be at least 1")
        return MessageSize(count, "elements")
    return MessageSize(parse_size(value), "bytes")
