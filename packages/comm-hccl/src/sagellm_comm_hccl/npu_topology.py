"""This host's Ascend NPUs for ``Topology.discover()``, read from ``npu-smi`` (the driver's tool); never raises.

Three read-only queries, each under a timeout (together at most ``NPU_SMI_BUDGET_S``):

- ``npu-smi info -l``: the NPUs (cards or modules) and how many chips each holds;
- ``npu-smi info``: one table row pair per chip: name, health, PCIe bus id, memory (HBM when the chip has it);
- ``npu-smi info -m``: which logical device id each chip has (the index torch_npu uses: ``npu:<id>``).

Without the mapping, chips are numbered in the order npu-smi lists them, which is how the driver assigns logical ids
when every device is visible. When npu-smi is absent or fails, torch_npu (when installed) gives the device count as
a second source; names and memory would need the NPU runtime initialized in this process, which discovery avoids.
The parsers are pure functions of the command output (tested on sample outputs in npu-smi's formats).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from typing import Any

from sagellm_comm.topology import Device, Topology

__all__ = [
    "NO_NPU_SMI",
    "npu_facts",
    "npu_smi_devices",
    "parse_chip_mapping",
    "parse_npu_list",
    "parse_npu_smi_version",
    "parse_npu_table",
]

NO_NPU_SMI = "npu-smi not found (no Ascend driver/toolkit on this host)"
# where the Ascend driver installs npu-smi when it is not on PATH (it is on root's PATH as /usr/local/sbin)
NPU_SMI_FALLBACKS: tuple[str, ...] = ("/usr/local/sbin/npu-smi", "/usr/local/bin/npu-smi")
NPU_SMI_TIMEOUT_S = 5.0
NPU_SMI_BUDGET_S = 10.0
MIB = 1 << 20

_PAIR = re.compile(r"(\d+)\s*/\s*(\d+)")
_BUS_ID = re.compile(r"^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$")
_VERSION = re.compile(r"npu-smi\s+(\S+)")
_COUNT_KEYS = frozenset({"chip_count"})
_MAPPING_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+|-)\s+(.*?)\s*$")


# -- parsers (pure) --------------------------------------------------------------------------------------------------
def parse_npu_list(text: str) -> list[dict[str, Any]]:
    """``npu-smi info -l``: ``Key : Value`` lines, one block per NPU starting at ``NPU ID``.

    Returns ``[{"npu_id": 0, "chip_count": 1, "product_name": ..., ...}]``: every key of the block, snake_cased
    (values as text, ids and counts as ints); the totals line (``Total Count`` / ``Card Count``) is skipped.
    """
    npus: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = "_".join(key.strip().lower().split()), value.strip()
        if key == "npu_id":
            if not value.isdigit():
                current = None
                continue
            current = {"npu_id": int(value)}
            npus.append(current)
        elif current is not None and key:
            current[key] = int(value) if key in _COUNT_KEYS and value.isdigit() else value
    return npus


def parse_npu_smi_version(text: str) -> str:
    """The tool's version from the table header (``| npu-smi 24.1.0   Version: 24.1.0 |``), else ``""``."""
    for line in text.splitlines()[:5]:
        match = _VERSION.search(line)
        if match:
            return match.group(1)
    return ""


def _cells(line: str) -> list[str] | None:
    text = line.strip()
    if not text.startswith("|") or not text.endswith("|"):
        return None
    return [c.strip() for c in text[1:-1].split("|")]


def parse_npu_table(text: str) -> list[dict[str, Any]]:
    """``npu-smi info``: each chip is a row pair, ``| NPU Name | Health | ... |`` then ``| Chip [Phy-ID|Device] |
    Bus-Id | AICore(%) Memory-Usage(MB) [HBM-Usage(MB)] |``; the process table that may follow is ignored.

    Returns ``[{"npu_id", "chip_id", "name", "health", "bus_id", "memory_mb", ["phy_id"]}]`` in listed order;
    ``memory_mb`` is the HBM total when the chip reports one, else the memory total.
    """
    chips: list[dict[str, Any]] = []
    npu: dict[str, Any] | None = None
    for line in text.splitlines():
        if "Process id" in line or "Process name" in line:
            break  # the per-process table: no more chips
        cells = _cells(line)
        if cells is None or len(cells) < 3:
            continue
        head = cells[0].split()
        if not head or not head[0].isdigit():
            continue
        if _BUS_ID.match(cells[1]) or (npu is not None and cells[1].upper() == "NA"):
            if npu is None:
                continue
            pairs = [(int(a), int(b)) for a, b in _PAIR.findall(cells[2])]
            totals = [total for _, total in pairs]
            memory = totals[1] if len(totals) > 1 and totals[1] > 0 else (totals[0] if totals else 0)
            chip = {**npu, "chip_id": int(head[0]), "bus_id": cells[1], "memory_mb": memory}
            if len(head) > 1 and head[1].isdigit():
                chip["phy_id"] = int(head[1])
            chips.append(chip)
            npu = None
        elif len(head) >= 2:
            npu = {"npu_id": int(head[0]), "name": " ".join(head[1:]), "health": cells[1]}
    return chips


def parse_chip_mapping(text: str) -> dict[tuple[int, int], dict[str, Any]]:
    """``npu-smi info -m``: ``NPU ID  Chip ID  Chip Logic ID  Chip Name`` rows -> ``{(npu, chip): {"logic_id",
    "chip_name"}}``; chips without a logic id (``-``, e.g. the board's MCU) map to ``logic_id None``."""
    mapping: dict[tuple[int, int], dict[str, Any]] = {}
    for line in text.splitlines():
        match = _MAPPING_ROW.match(line)
        if match is None:
            continue
        npu_id, chip_id, logic, name = match.groups()
        mapping[(int(npu_id), int(chip_id))] = {"logic_id": None if logic == "-" else int(logic), "chip_name": name}
    return mapping


def _chip_count(npu: dict[str, Any]) -> int:
    count = npu.get("chip_count")
    return count if isinstance(count, int) and count > 0 else 1


def npu_smi_devices(
    listing: list[dict[str, Any]], table: list[dict[str, Any]], mapping: dict[tuple[int, int], dict[str, Any]]
) -> list[dict[str, Any]]:
    """One entry per compute chip (a torch ``npu:<index>`` device), from the three parsed outputs.

    The chips come from the table, else from the listing's chip counts (then without name or memory); the index is
    the mapping's logical id, else the listed order; chips the mapping gives no logical id are not devices.
    """
    chips = table or [
        {"npu_id": n["npu_id"], "chip_id": c, "name": str(n.get("product_name", ""))}
        for n in listing
        for c in range(_chip_count(n))
    ]
    devices: list[dict[str, Any]] = []
    for order, chip in enumerate(chips):
        mapped = mapping.get((chip["npu_id"], chip["chip_id"]))
        if mapped is not None and mapped["logic_id"] is None:
            continue
        rest = {k: v for k, v in chip.items() if k not in ("name", "memory_mb")}
        devices.append(
            {
                "index": order if mapped is None else mapped["logic_id"],
                "index_source": "listed order" if mapped is None else "npu-smi info -m",
                "name": (mapped or {}).get("chip_name") or chip.get("name", ""),
                "memory_bytes": int(chip.get("memory_mb", 0)) * MIB,
                "chip_model": chip.get("name", ""),
                **rest,
            }
        )
    return devices


# -- running npu-smi -------------------------------------------------------------------------------------------------
def find_npu_smi() -> str | None:
    found = shutil.which("npu-smi")
    if found:
        return found
    return next((p for p in NPU_SMI_FALLBACKS if os.path.isfile(p) and os.access(p, os.X_OK)), None)


def _run(path: str, args: list[str], deadline: float) -> tuple[str | None, str]:
    """``(stdout, "")`` or ``(None, why it failed)``; bounded by the timeout and the overall deadline."""
    timeout = min(NPU_SMI_TIMEOUT_S, deadline - time.monotonic())
    command = " ".join(["npu-smi", *args])
    if timeout <= 0:
        return None, f"{command}: skipped, the npu-smi time budget ({NPU_SMI_BUDGET_S:.0f} s) is spent"
    try:
        done = subprocess.run(
            [path, *args], capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return None, f"{command} timed out after {timeout:.1f} s"
    except OSError as exc:
        return None, f"{command} could not run ({type(exc).__name__}: {exc})"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or ["no output"]
        return None, f"{command} exited with status {done.returncode}: {tail[0]}"
    return done.stdout, ""


def _from_npu_smi(path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    deadline = time.monotonic() + NPU_SMI_BUDGET_S
    errors: list[str] = []
    outputs: dict[str, str] = {}
    for args in (["info", "-l"], ["info"], ["info", "-m"]):
        out, why = _run(path, args, deadline)
        if why:
            errors.append(why)
        outputs[" ".join(args)] = out or ""
    listing = parse_npu_list(outputs["info -l"])
    table = parse_npu_table(outputs["info"])
    mapping = parse_chip_mapping(outputs["info -m"])
    devices = npu_smi_devices(listing, table, mapping)
    facts: dict[str, Any] = {
        "source": "npu-smi",
        "npu_smi": path,
        "version": parse_npu_smi_version(outputs["info"]),
        "cards": listing,
    }
    if errors:
        facts["errors"] = errors
    return facts, devices


def _from_torch_npu() -> tuple[list[dict[str, Any]], str]:
    """Device indices from torch_npu (count only: names and memory would initialize the NPU runtime here)."""
    from sagellm_comm_hccl.probes import load_torch_npu

    module, why = load_torch_npu()
    if module is None:
        return [], why
    try:
        count = int(module.npu.device_count())
    except Exception as exc:
        return [], f"torch_npu could not count NPU devices ({type(exc).__name__}: {exc})"
    if count <= 0:
        return [], f"torch_npu {getattr(module, '__version__', '?')} found no NPU device"
    return [{"index": i, "index_source": "torch_npu", "name": "", "memory_bytes": 0} for i in range(count)], ""


def _append(topology: Topology, devices: list[dict[str, Any]], source: str) -> int:
    present = {(d.kind, d.index) for d in topology.devices}
    added = 0
    for dev in devices:
        if ("npu", dev["index"]) in present:
            continue
        props = {k: v for k, v in dev.items() if k not in ("index", "name", "memory_bytes")}
        topology.devices.append(
            Device(
                kind="npu",
                index=dev["index"],
                name=dev["name"],
                memory_bytes=dev["memory_bytes"],
                properties={**props, "source": source},
            )
        )
        present.add(("npu", dev["index"]))
        added += 1
    return added


def npu_facts(topology: Topology) -> dict[str, Any]:
    """The ``sagellm_comm_topology_facts`` answer: ``{"npus": [...], "source": ...}``, or ``{"npus": [],
    "reason": ...}`` when this host shows no NPU; appends the NPUs to ``topology.devices``. Never raises."""
    try:
        path = find_npu_smi()
        facts: dict[str, Any]
        if path is not None:
            facts, devices = _from_npu_smi(path)
            if devices:
                facts["npus"] = devices
                facts["devices_added"] = _append(topology, devices, "npu-smi")
                return facts
            reason = "; ".join(facts.get("errors", [])) or "npu-smi lists no NPU"
        else:
            facts, reason = {}, NO_NPU_SMI
        devices, why = _from_torch_npu()
        if devices:
            return {
                **facts,
                "source": "torch_npu",
                "npu_smi_reason": reason,
                "npus": devices,
                "devices_added": _append(topology, devices, "torch_npu"),
            }
        return {**facts, "npus": [], "reason": reason, "torch_npu": why}
    except Exception as exc:  # discovery must never break Topology.discover()
        return {"npus": [], "reason": f"NPU discovery failed: {type(exc).__name__}: {exc}"}
