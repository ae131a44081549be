"""The NPU topology contribution: npu-smi parsers on sample outputs (tests/data, see its README: samples of the
format, not captures from a device here), and the facts hook failing soft.

No NPU is involved: the hook test with a fake ``npu-smi`` on PATH checks the parsing and the plumbing into
``Topology.devices`` only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sagellm_comm.topology import Device, Topology
from sagellm_comm_hccl import npu_topology
from sagellm_comm_hccl.npu_topology import (
    NO_NPU_SMI,
    npu_facts,
    npu_smi_devices,
    parse_chip_mapping,
    parse_npu_list,
    parse_npu_smi_version,
    parse_npu_table,
)

DATA = Path(__file__).parent / "data"
MIB = 1 << 20


def sample(name: str) -> str:
    return (DATA / name).read_text()


def _topology() -> Topology:
    return Topology(hostname="host", node_id="0", cpu_count=1)


# -- parsers ---------------------------------------------------------------------------------------------------------
def test_info_l_lists_npus_and_chip_counts() -> None:
    npus = parse_npu_list(sample("a2_910b3_info_l.txt"))
    assert [n["npu_id"] for n in npus] == [0, 1]
    assert npus[0] == {
        "npu_id": 0,
        "product_name": "IT21PDDA01",
        "serial_number": "102330000000000001",
        "chip_count": 1,
    }
    assert parse_npu_list(sample("a3_info_l.txt")) == [{"npu_id": 0, "chip_count": 2}, {"npu_id": 1, "chip_count": 2}]
    assert parse_npu_list("") == []


def test_info_table_a2_one_chip_per_npu_hbm_memory() -> None:
    text = sample("a2_910b3_info.txt")
    assert parse_npu_smi_version(text) == "24.1.0"
    chips = parse_npu_table(text)
    assert chips == [
        {"npu_id": 0, "name": "910B3", "health": "OK", "chip_id": 0, "bus_id": "0000:C1:00.0", "memory_mb": 65536},
        {"npu_id": 1, "name": "910B3", "health": "Warning", "chip_id": 0, "bus_id": "0000:C2:00.0", "memory_mb": 65536},
    ]  # the process table after the chips is not read as chips


def test_info_table_a3_two_chips_per_npu_with_phy_id() -> None:
    chips = parse_npu_table(sample("a3_info.txt"))
    assert [(c["npu_id"], c["chip_id"], c["phy_id"]) for c in chips] == [(0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 3)]
    assert {c["name"] for c in chips} == {"Ascend910"}
    assert {c["memory_mb"] for c in chips} == {65536}


def test_info_table_310_device_column_and_no_hbm() -> None:
    chips = parse_npu_table(sample("atlas300_310_info.txt"))
    assert [(c["npu_id"], c["chip_id"], c["phy_id"], c["memory_mb"]) for c in chips] == [
        (6, 0, 3, 8192),
        (6, 1, 4, 8192),
        (6, 2, 5, 8192),
        (6, 3, 6, 8192),
    ]


def test_info_table_910a_prefers_hbm_over_ddr() -> None:
    chips = parse_npu_table(sample("a1_910a_info.txt"))
    assert [c["memory_mb"] for c in chips] == [32768, 32768]
    assert parse_npu_smi_version(sample("a1_910a_info.txt")) == "24.1.RC2"


def test_info_m_maps_chips_to_logical_ids_and_skips_mcu() -> None:
    mapping = parse_chip_mapping(sample("atlas300_310_info_m.txt"))
    assert mapping[(6, 2)] == {"logic_id": 2, "chip_name": "Ascend 310"}
    assert mapping[(6, 4)] == {"logic_id": None, "chip_name": "Mcu"}
    assert parse_chip_mapping("garbage\n\n") == {}


def test_devices_use_the_mapping_when_present() -> None:
    devices = npu_smi_devices(
        parse_npu_list(sample("a2_910b3_info_l.txt")),
        parse_npu_table(sample("a2_910b3_info.txt")),
        parse_chip_mapping(sample("a2_910b3_info_m.txt")),
    )
    assert [(d["index"], d["name"], d["memory_bytes"]) for d in devices] == [
        (0, "Ascend 910B3", 65536 * MIB),
        (1, "Ascend 910B3", 65536 * MIB),
    ]
    assert devices[1]["index_source"] == "npu-smi info -m" and devices[1]["health"] == "Warning"
    json.dumps(devices)  # facts must be JSON-serialisable


def test_devices_fall_back_to_listed_order_then_to_the_listing() -> None:
    devices = npu_smi_devices([], parse_npu_table(sample("a3_info.txt")), {})
    assert [d["index"] for d in devices] == [0, 1, 2, 3]
    assert {d["index_source"] for d in devices} == {"listed order"}
    only_listing = npu_smi_devices(parse_npu_list(sample("a3_info_l.txt")), [], {})
    assert [(d["npu_id"], d["chip_id"], d["index"], d["memory_bytes"]) for d in only_listing] == [
        (0, 0, 0, 0),
        (0, 1, 1, 0),
        (1, 0, 2, 0),
        (1, 1, 3, 0),
    ]


# -- the facts hook ----------------------------------------------------------------------------------------------------
def test_hook_without_npu_smi_gives_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(npu_topology, "NPU_SMI_FALLBACKS", ())
    topo = _topology()
    facts = npu_facts(topo)
    assert facts["npus"] == [] and facts["reason"] == NO_NPU_SMI
    assert topo.devices == []
    json.dumps(facts)


def test_discover_carries_the_plugin_answer() -> None:
    facts = Topology.discover().facts
    assert "hccl" in facts and "npus" in facts["hccl"]


def _fake_npu_smi(directory: Path, outputs: dict[str, str], status: int = 0) -> None:
    """An ``npu-smi`` that prints a sample per argument list (a test double for the tool, not an NPU)."""
    files = {}
    for args, name in outputs.items():
        files[args] = str(DATA / name)
    script = directory / "npu-smi"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"files = {files!r}\n"
        "path = files.get(' '.join(sys.argv[1:]))\n"
        "if path is None:\n"
        "    sys.exit('unknown command')\n"
        "sys.stdout.write(open(path).read())\n"
        f"sys.exit({status})\n"
    )
    script.chmod(0o755)


def test_hook_with_a_fake_npu_smi_appends_devices(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Parsing and plumbing only: a script named npu-smi prints sample outputs; the hook appends one Device per
    chip, keeps the ones already present, and returns JSON-serialisable facts."""
    _fake_npu_smi(
        tmp_path, {"info -l": "a2_910b3_info_l.txt", "info": "a2_910b3_info.txt", "info -m": "a2_910b3_info_m.txt"}
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    topo = _topology()
    topo.devices.append(Device(kind="npu", index=0, name="already known"))
    facts = npu_facts(topo)
    assert facts["source"] == "npu-smi" and facts["version"] == "24.1.0"
    assert [n["index"] for n in facts["npus"]] == [0, 1] and facts["devices_added"] == 1
    assert [(d.kind, d.index, d.name) for d in topo.devices] == [
        ("npu", 0, "already known"),
        ("npu", 1, "Ascend 910B3"),
    ]
    assert topo.devices[1].memory_bytes == 65536 * MIB
    assert topo.devices[1].properties["bus_id"] == "0000:C2:00.0"
    assert "errors" not in facts
    json.dumps(facts)


def test_hook_with_a_failing_npu_smi_fails_soft(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_npu_smi(tmp_path, {"info -l": "a2_910b3_info_l.txt", "info": "a2_910b3_info.txt"}, status=8)
    monkeypatch.setenv("PATH", str(tmp_path))
    topo = _topology()
    facts = npu_facts(topo)
    assert facts["npus"] == [] and "exited with status 8" in facts["reason"]
    assert topo.devices == []


def test_hook_with_a_hanging_npu_smi_is_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = tmp_path / "npu-smi"
    script.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(30)\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(npu_topology, "NPU_SMI_TIMEOUT_S", 0.5)
    monkeypatch.setattr(npu_topology, "NPU_SMI_BUDGET_S", 1.2)
    facts = npu_facts(_topology())
    assert facts["npus"] == [] and "timed out" in facts["reason"]
