"""Settings of the memory-semantic backends: constructor options win over ``SAGELLM_COMM_*`` environment variables.

============================  =======================================  ==================================
option / variable             meaning                                   default
============================  =======================================  ==================================
slot_bytes                    bytes per rank per parity for collectives  512 KiB, or 2 MiB when ranks outnumber
                                                                         cores (``SAGELLM_COMM_SHM_SLOT_BYTES``)
chunk_bytes                   bytes per send/recv mailbox                256 KiB (``SAGELLM_COMM_SHM_CHUNK_BYTES``)
spin_us                       how long a waiting rank spins first        5, or 0 when ranks outnumber cores
                                                                         (``SAGELLM_COMM_SHM_SPIN_US``)
yield_us                      then how long it polls with sched_yield    500 (``SAGELLM_COMM_SHM_YIELD_US``)
shm_dir                       where ``shm`` regions live                 /dev/shm (``SAGELLM_COMM_SHM_DIR``)
cxl_path                      CXL memory: a directory, DAX device/file   unset (``SAGELLM_COMM_CXL_PATH``)
cxl_offset                    start of this job's window in a device     0 (``SAGELLM_COMM_CXL_OFFSET``)
ub_segment                    UB segment's mapped device node            unset (``SAGELLM_COMM_UB_SEGMENT``)
allreduce                     all_reduce algorithm: auto, direct, split  auto (``SAGELLM_COMM_SHM_ALLREDUCE``)
engine                        auto (native where built), native, python  auto (``SAGELLM_COMM_SHM_ENGINE``)
============================  =======================================  ==================================

Sizes accept units (``4M``, ``256K``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from sagellm_comm.errors import InvalidArgumentError

__all__ = ["DEFAULT_CHUNK_BYTES", "DEFAULT_SLOT_BYTES", "MemoryConfig", "parse_bytes"]

DEFAULT_SLOT_BYTES = 512 << 10  # a chunk, its slot and the peer's fit in a 2 MiB L2
CROWDED_SLOT_BYTES = 2 << 20  # ranks sharing cores: every step costs context switches, so take fewer, larger ones
DEFAULT_CHUNK_BYTES = 256 << 10
MAX_BYTES = 1 << 40  # a size option beyond this is a typo, not a region anyone can map
ALLREDUCE_ALGOS = ("auto", "direct", "split")
ENGINES = ("auto", "native", "python")
_UNITS = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "KB": 1 << 10,
    "KIB": 1 << 10,
    "M": 1 << 20,
    "MB": 1 << 20,
    "MIB": 1 << 20,
    "G": 1 << 30,
    "GB": 1 << 30,
    "GIB": 1 << 30,
}


def parse_bytes(name: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        text = str(value).strip().upper()
        digits = text.rstrip("KMGIB")
        try:
            n = int(float(digits) * _UNITS[text[len(digits) :].strip()])
        except (KeyError, ValueError, OverflowError):  # OverflowError: "inf", "1e400"
            raise InvalidArgumentError(f"{name}={value!r} is not a size (examples: 1048576, 256K, 4M)") from None
    if n <= 0:
        raise InvalidArgumentError(f"{name} must be positive, got {value!r}")
    if n > MAX_BYTES:
        raise InvalidArgumentError(f"{name}={value!r} is larger than {MAX_BYTES} bytes")
    return n


def _opt(options: dict[str, Any], key: str, env: str, default: Any) -> Any:
    if options.get(key) is not None:
        return options[key]
    raw = os.environ.get(env)
    return raw if raw not in (None, "") else default


def _micros(options: dict[str, Any], key: str, env: str) -> float | None:
    raw = _opt(options, key, env, None)
    try:
        value = None if raw is None else float(raw)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{key}={raw!r} is not a number of microseconds") from None
    if value is not None and not math.isfinite(value):
        raise InvalidArgumentError(f"{key}={raw!r} is not a finite number of microseconds")
    return value


def _algo(value: Any) -> str:
    algo = str(value).strip().lower()
    if algo not in ALLREDUCE_ALGOS:
        raise InvalidArgumentError(f"allreduce={value!r}: choose one of {', '.join(ALLREDUCE_ALGOS)}")
    return algo


def _engine(value: Any) -> str:
    engine = str(value).strip().lower()
    if engine not in ENGINES:
        raise InvalidArgumentError(f"engine={value!r}: choose one of {', '.join(ENGINES)}")
    return engine


@dataclass(frozen=True)
class MemoryConfig:
    slot_bytes: int | None  # None: chosen per group by ``slot_for``
    chunk_bytes: int
    spin_us: float | None
    yield_us: float | None
    shm_dir: str
    cxl_path: str | None
    cxl_offset: int
    ub_segment: str | None
    allreduce: str = "auto"
    engine: str = "auto"

    @classmethod
    def from_options(cls, options: dict[str, Any] | None = None) -> MemoryConfig:
        o = options or {}
        raw_slot = _opt(o, "slot_bytes", "SAGELLM_COMM_SHM_SLOT_BYTES", None)
        slot = None if raw_slot is None else parse_bytes("slot_bytes", raw_slot)
        chunk = parse_bytes("chunk_bytes", _opt(o, "chunk_bytes", "SAGELLM_COMM_SHM_CHUNK_BYTES", DEFAULT_CHUNK_BYTES))
        spin_us = _micros(o, "spin_us", "SAGELLM_COMM_SHM_SPIN_US")
        yield_us = _micros(o, "yield_us", "SAGELLM_COMM_SHM_YIELD_US")
        offset = _opt(o, "cxl_offset", "SAGELLM_COMM_CXL_OFFSET", 0)
        return cls(
            slot_bytes=None if slot is None else (slot + 4095) // 4096 * 4096,
            chunk_bytes=(chunk + 127) // 128 * 128,
            spin_us=spin_us,
            yield_us=yield_us,
            shm_dir=str(_opt(o, "shm_dir", "SAGELLM_COMM_SHM_DIR", "/dev/shm")),
            cxl_path=_opt(o, "cxl_path", "SAGELLM_COMM_CXL_PATH", None),
            cxl_offset=0 if offset in (0, "0") else parse_bytes("cxl_offset", offset),
            ub_segment=_opt(o, "ub_segment", "SAGELLM_COMM_UB_SEGMENT", None),
            allreduce=_algo(_opt(o, "allreduce", "SAGELLM_COMM_SHM_ALLREDUCE", "auto")),
            engine=_engine(_opt(o, "engine", "SAGELLM_COMM_SHM_ENGINE", "auto")),
        )

    @staticmethod
    def crowded(ranks_here: int) -> bool:
        """More ranks on this host than cores this process may run on."""
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        return ranks_here > cores

    def slot_choices(self) -> tuple[int, ...]:
        """Every slot size ``slot_for`` may pick (carved devices reserve room for the largest)."""
        return (self.slot_bytes,) if self.slot_bytes is not None else (DEFAULT_SLOT_BYTES, CROWDED_SLOT_BYTES)

    def slot_for(self, ranks_here: int) -> int:
        """Slot size of a group (measured here, 16 MiB all_reduce: 2 ranks fastest with 512 KiB slots, 4 ranks on
        2 cores 1.5x faster with 2 MiB ones)."""
        if self.slot_bytes is not None:
            return self.slot_bytes
        return CROWDED_SLOT_BYTES if self.crowded(ranks_here) else DEFAULT_SLOT_BYTES

    def wait_budget(self, ranks_here: int) -> tuple[float, float]:
        """(spin, yield) seconds a wait polls before it sleeps on the futex.

        Polling with ``sched_yield`` costs a syscall per poll when the core is ours alone, and hands the core over
        when anything else wants it -- the rank being waited for, or another job on a shared machine. Measured
        here (2 cores, other jobs running): yield-polling beat pure spinning by 1.5-2x at 4 KiB with 2 and 4 ranks
        and matched it at 16 MiB; sleeping straight away was slowest (a futex wake-up costs ~50-100 us here)."""
        crowded = self.crowded(ranks_here)
        spin = self.spin_us if self.spin_us is not None else (0.0 if crowded else 5.0)
        yld = self.yield_us if self.yield_us is not None else 500.0
        return max(0.0, spin) * 1e-6, max(0.0, yld) * 1e-6
