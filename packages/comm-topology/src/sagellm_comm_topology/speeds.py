"""Nominal link speeds from what the hardware reports: PCIe rate and width, NVLink version, NIC speed, RDMA rate.

All results are GB/s in one direction. These are signalling rates after line encoding, i.e. upper bounds; the
profiler measures what a backend really gets.
"""

from __future__ import annotations

import re

__all__ = ["NVLINK_GBPS", "NVLINK_NAMES", "net_gbps", "nvlink_gbps", "parse_gts", "parse_rdma_rate", "pcie_gbps"]

# NVML's nvmlNvlinkVersion_t (NVML_NVLINK_VERSION_1_0 = 1 ... _5_0 = 7) -> the NVLink generation it names
NVLINK_NAMES = {1: "1.0", 2: "2.0", 3: "2.2", 4: "3.0", 5: "3.1", 6: "4.0", 7: "5.0", 8: "6.0"}
# GB/s per link and direction, by that enum: NVLink 1 (P100) 20; 2.x (V100) 25; 3.x (A100) 25; 4 (H100) 25;
# 5 (B200) 50. NVLink 6's per-link rate is not in this table (unknown -> measured by the profiler).
NVLINK_GBPS = {1: 20.0, 2: 25.0, 3: 25.0, 4: 25.0, 5: 25.0, 6: 25.0, 7: 50.0}

_ENCODING = [  # (max GT/s of the generation, payload fraction of the line code)
    (5.0, 8 / 10),  # gen 1, 2: 8b/10b
    (32.0, 128 / 130),  # gen 3, 4, 5: 128b/130b
    (float("inf"), 242 / 256),  # gen 6+: FLIT mode
]


def parse_gts(text: str | None) -> float | None:
    """``"16.0 GT/s PCIe"`` or ``"8 GT/s"`` -> 16.0 / 8.0; ``"Unknown"`` or None -> None."""
    if not text:
        return None
    m = re.match(r"\s*([0-9.]+)\s*GT/s", text)
    return float(m.group(1)) if m else None


def pcie_gbps(gts: float | None, width: int | None) -> float | None:
    """Bandwidth of a PCIe link from its rate per lane (GT/s) and width."""
    if not gts or not width:
        return None
    enc = next(frac for limit, frac in _ENCODING if gts <= limit)
    return round(gts * enc / 8.0 * width, 3)


def nvlink_gbps(version: int | None, links: int) -> float | None:
    per = NVLINK_GBPS.get(version or 0)
    return None if per is None else per * links


def net_gbps(speed_mbps: int | None) -> float | None:
    return None if not speed_mbps or speed_mbps <= 0 else speed_mbps / 8000.0


def parse_rdma_rate(text: str | None) -> float | None:
    """``"100 Gb/sec (4X EDR)"`` -> 100.0 (Gb/s)."""
    if not text:
        return None
    m = re.match(r"\s*([0-9.]+)\s*Gb/sec", text)
    return float(m.group(1)) if m else None
