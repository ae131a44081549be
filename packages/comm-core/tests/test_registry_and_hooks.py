"""Contract v2 in one process, with no plugin installed (the core's own tox env): lazy registration by path, install
hints, auto selection by device, hooks called through pluggy (arguments bound, firstresult, isolation)."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from sagellm_protocol.errors import ErrorCode

from sagellm_comm import BackendNotSupportedError, get_comm_backend, list_comm_backends, register_comm_backend
from sagellm_comm import hints as hints_module
from sagellm_comm.plugins import hookimpl, hookspecs
from sagellm_comm.registry import BackendSpec, plugin_manager, register_plugin, reload_plugins, select_backend_name
from sagellm_comm.topology import Topology


@pytest.fixture
def no_plugins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SAGELLM_COMM_PLUGINS", "none")
    reload_plugins()
    yield
    reload_plugins()


# ---------------------------------------------------------------------------------------------- lazy registry
def test_a_factory_given_by_path_is_imported_only_when_a_backend_is_created(no_plugins, tmp_path, monkeypatch):
    (tmp_path / "lazy_engine_mod.py").write_text("from core_alone_tasks import LoopbackBackend as Engine\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_engine_mod", raising=False)
    register_comm_backend("lazy", "lazy_engine_mod:Engine", description="by path")
    listed = {s.name: s for s in list_comm_backends()}
    assert listed["lazy"].available and listed["lazy"].capabilities == {}
    assert "lazy_engine_mod" not in sys.modules, "listing must not import the factory"
    comm = get_comm_backend("lazy")
    assert "lazy_engine_mod" in sys.modules and comm.name == "loopback"
    assert {s.name: s for s in list_comm_backends()}["lazy"].capabilities["ops"] == ["all_reduce"]


def test_a_factory_that_cannot_be_imported_names_the_install_hint(no_plugins):
    register_comm_backend(
        "needs-lib",
        "definitely_missing_vendor_lib.engine:Backend",
        install_hint="pip install 'isagellm-comm[needs-lib]' and the vendor's runtime",
    )
    assert [s.name for s in list_comm_backends()] == ["needs-lib"]  # listing works without the library
    with pytest.raises(BackendNotSupportedError) as info:
        get_comm_backend("needs-lib")
    msg = info.value.message
    assert info.value.code is ErrorCode.COMM_BACKEND_NOT_SUPPORTED
    assert "definitely_missing_vendor_lib" in msg and "pip install 'isagellm-comm[needs-lib]'" in msg


def test_an_availability_probe_by_path_fails_soft(no_plugins):
    register_comm_backend("probed", "core_alone_tasks:LoopbackBackend", available="no_such_probe_module:check")
    status = {s.name: s for s in list_comm_backends()}["probed"]
    assert not status.available and "ModuleNotFoundError" in status.reason
    with pytest.raises(BackendNotSupportedError, match="installed but unavailable"):
        get_comm_backend("probed")


def test_bad_factory_paths_are_refused(no_plugins):
    with pytest.raises(Exception, match="factory must be callable"):
        register_comm_backend("bad", 42)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="module:attribute"):
        BackendSpec(name="x", factory="no_colon").load()


# --------------------------------------------------------------------------------------------- auto and hints
def test_auto_picks_a_cpu_backend_on_a_gpu_host_unless_told_otherwise(no_plugins, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a CUDA host with no GPU plugin installed
    register_comm_backend("cpu-one", "core_alone_tasks:LoopbackBackend", priority=3)
    assert select_backend_name() == "cpu-one"
    assert get_comm_backend().name == "loopback"
    assert select_backend_name(torch.empty(2)) == "cpu-one"  # a tensor names its device
    with pytest.raises(BackendNotSupportedError) as info:
        get_comm_backend("auto", device="cuda:0")
    msg = info.value.message
    assert "no installed backend handles 'cuda' tensors" in msg and "cpu-one (cpu)" in msg
    assert "nccl" in msg, "names the extra, or torch.distributed's engine, for the device"


def test_the_device_hint_names_an_extra_only_when_it_exists(monkeypatch):
    monkeypatch.setattr(hints_module, "meta_extras", lambda: ("9.9", ["gloo", "nccl", "plot"]))
    assert hints_module.hint_for_device("cuda").endswith("pip install 'isagellm-comm[nccl]'")
    assert hints_module.hint_for_backend("nccl") == "install it with: pip install 'isagellm-comm[nccl]'"
    monkeypatch.setattr(hints_module, "meta_extras", lambda: ("9.9", ["gloo", "plot"]))
    text = hints_module.hint_for_backend("nccl")
    assert "no extra of isagellm-comm is named 'nccl'" in text and "gloo" in text and "plot" not in text
    monkeypatch.setattr(hints_module, "meta_extras", lambda: (None, []))
    assert "is not installed" in hints_module.hint_for_device("npu")


# ------------------------------------------------------------------------------------------------------ hooks
def test_every_first_wins_hook_is_firstresult() -> None:
    first_wins = {
        "sagellm_comm_select_algorithm",
        "sagellm_comm_topology_gather",
        "sagellm_comm_topology_descriptor",
        "sagellm_comm_topology_tree",
        "sagellm_comm_topology_render",
        "sagellm_comm_topology_profile",
    }
    for name in first_wins:
        opts = getattr(hookspecs, name).sagellm_comm_spec
        assert opts.get("firstresult") is True, name
    for name in ("sagellm_comm_register_backends", "sagellm_comm_topology_facts"):
        assert not getattr(hookspecs, name).sagellm_comm_spec.get("firstresult"), name


class _Few:
    """Valid pluggy implementations that declare fewer arguments than the specs offer."""

    @hookimpl
    def sagellm_comm_topology_descriptor(self, topology):  # no `backend`
        from sagellm_protocol import CommBackendType, CommTopologyDescriptor, TopologyType

        return CommTopologyDescriptor(
            topology_type=TopologyType.RING,
            num_nodes=7,
            gpus_per_node=1,
            backend=CommBackendType.GLOO,
            metadata={"host": topology.hostname},
        )

    @hookimpl
    def sagellm_comm_topology_facts(self):  # no arguments at all
        return {"few": True}

    @hookimpl
    def sagellm_comm_select_algorithm(self, op):
        return None


class _Broken:
    @hookimpl
    def sagellm_comm_topology_facts(self, topology):
        raise RuntimeError("facts exploded on purpose")

    @hookimpl
    def sagellm_comm_topology_descriptor(self, topology, backend):
        raise RuntimeError("descriptor exploded on purpose")


def test_hooks_bind_only_the_arguments_an_implementation_declares(no_plugins):
    register_plugin(_Few(), "few")
    topo = Topology.discover()
    assert topo.facts["few"] == {"few": True}
    desc = topo.to_descriptor()
    assert desc.num_nodes == 7 and desc.metadata["descriptor_from"] == "few"


def test_a_broken_plugin_does_not_stop_the_others(no_plugins):
    register_plugin(_Few(), "few")
    register_plugin(_Broken(), "broken")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        topo = Topology.discover()
        desc = topo.to_descriptor()
    assert topo.facts["few"] == {"few": True}
    assert "facts exploded" in topo.plugin_errors["broken"]
    assert desc.num_nodes == 7, "the descriptor falls back to the next plugin"
    assert any("descriptor exploded" in str(w.message) for w in caught)


def test_call_first_propagates_when_not_isolated(no_plugins):
    register_plugin(_Broken(), "broken")
    with pytest.raises(RuntimeError, match="descriptor exploded"):
        plugin_manager().call_first(
            "sagellm_comm_topology_descriptor", isolate=False, topology=Topology.discover(enrich=False), backend=None
        )
