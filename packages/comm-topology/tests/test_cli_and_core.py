"""``sagellm-comm topology`` and the core's ``Topology`` with and without the plugin.

The cases call ``main()`` in-process (the same parser and code as the ``sagellm-comm`` script, without paying an
interpreter and torch start-up per case on this 2-core machine).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from topology_paths import FIXTURES

from sagellm_comm import Topology
from sagellm_comm.cli.main import main
from sagellm_comm.errors import BackendNotSupportedError
from sagellm_comm.registry import reload_plugins, select_backend_name
from sagellm_comm_topology.local import discover_host


@pytest.fixture
def no_plugins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SAGELLM_COMM_PLUGINS", "none")
    reload_plugins()
    yield
    monkeypatch.delenv("SAGELLM_COMM_PLUGINS")
    reload_plugins()


def test_command_prints_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology"]) == 0
    out = capsys.readouterr().out
    host = discover_host()
    assert host.hostname in out and f"{host.core_count} cores, {host.cpu_count} threads" in out
    for numa in host.numa:
        assert f"NUMA {numa.id} ({numa.kind})" in out
    for nic in host.nics:
        assert f"NIC {nic.name}:" in out or f"{nic.name} (loopback" in out
        if nic.speed_mbps:
            assert f"{nic.speed_mbps} Mb/s" in out
        elif nic.speed_reason:
            assert nic.speed_reason in out
    if not host.accelerators:
        assert "no GPU/NPU: nvml: " in out and host.source("nvml").detail in out


def test_json_has_topology_and_descriptor(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    cluster = data["topology"]["facts"]["topology"]
    assert cluster["schema"] == "sagellm-comm-topology/1" and len(cluster["nodes"]) == 1
    desc = data["descriptor"]
    assert desc["num_nodes"] == 1 and desc["metadata"]["descriptor_from"] == "topology"
    assert desc["metadata"]["hostname"] == data["topology"]["hostname"]


def test_render_png_and_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, svg = tmp_path / "topo.png", tmp_path / "topo.svg"
    assert main(["topology", "--render", str(png)]) == 0
    assert f"picture written to {png}" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert main(["topology", "--from", str(FIXTURES / "cluster-4x8.json"), "--render", str(svg)]) == 0
    text = svg.read_text()
    assert all(f"dgx-0{i}" in text for i in range(4)) and "50.0 GB/s nominal" in text
    capsys.readouterr()
    assert main(["topology", "--render", str(tmp_path / "topo.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot render" in err


def test_replayed_topology(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "--from", str(FIXTURES / "cluster-4x8.json")]) == 0
    out = capsys.readouterr().out
    assert "4 node(s), 32 rank(s), type hybrid, recommended backend nccl" in out
    assert "dgx-03  node node03, ranks [24, 25, 26, 27, 28, 29, 30, 31]" in out
    assert main(["topology", "--from", "/nonexistent.json"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_profile_through_launched_ranks(capsys: pytest.CaptureFixture[str], isolated_cache: Path) -> None:
    try:
        backend = select_backend_name("cpu")
    except BackendNotSupportedError:
        backend = None
    code = main(["topology", "--profile", "--budget", "2"])
    captured = capsys.readouterr()
    if backend is None:  # e.g. tox env "topology": the core and this plugin only, no backend installed
        assert code == 2 and "no installed backend handles" in captured.err and captured.err.count("\n") == 1
        return
    assert code == 0, captured.err
    assert "measured" in captured.out and f"({backend}, ranks 0<->1)" in captured.out
    assert len(list(isolated_cache.glob("*.json"))) == 1
    assert main(["topology"]) == 0  # later runs show the cached measurement
    assert f"({backend}, ranks 0<->1)" in capsys.readouterr().out


def test_core_uses_the_plugin_when_installed() -> None:
    topo = Topology.discover()
    assert topo.facts["topology"]["nodes"][0]["hostname"] == topo.hostname
    assert topo.notes == [] and topo.num_nodes == 1
    desc = topo.to_descriptor()
    assert desc.metadata["descriptor_from"] == "topology" and desc.metadata["hostname"] == topo.hostname
    assert desc.num_nodes == 1


def test_core_without_the_plugin(no_plugins: None, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    topo = Topology.discover()
    assert topo.facts == {} and any("host-only view" in n for n in topo.notes)
    assert "descriptor_from" not in topo.to_descriptor().metadata
    assert main(["topology"]) == 0
    out = capsys.readouterr().out
    assert topo.hostname in out and "host-only view" in out
    assert main(["topology", "--render", str(tmp_path / "x.png")]) == 2
    assert "needs a topology plugin" in capsys.readouterr().err
