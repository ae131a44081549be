"""Plugin isolation: fake distributions installed only inside the test (a dist-info directory in tmp_path
put on PYTHONPATH of a subprocess): one that fails at import, one whose registration hook raises, and a
good one.

A broken plugin must be reported (CLI, list_comm_backends, a warning) and must not stop the other plugins;
SAGELLM_COMM_PLUGINS / SAGELLM_COMM_DISABLE_PLUGINS choose which plugins load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from sagellm_protocol.errors import ErrorCode

BROKEN_ERROR = "broken_sagellm_plugin needs libfrobnicate.so.42, which is deliberately missing"
HOOK_ERROR = "registration hook exploded on purpose"

BROKEN_MODULE = f"""
raise ImportError({BROKEN_ERROR!r})
"""

HOOKFAIL_MODULE = f"""
from sagellm_comm.plugins import hookimpl
from sagellm_comm_gloo import GlooBackend

SAGELLM_COMM_PLUGIN_API = "2.0"


@hookimpl
def sagellm_comm_register_backends(registry):
    # registers a backend, then fails: the half-done registration must be rolled back
    registry.register("hookfail-backend", GlooBackend)
    raise RuntimeError({HOOK_ERROR!r})
"""

LOOPBACK_MODULE = """
import torch
from sagellm_protocol import ReduceOp

from sagellm_comm import Capabilities, CommBackend
from sagellm_comm.errors import BackendNotSupportedError
from sagellm_comm.plugins import hookimpl
from sagellm_comm.registry import BackendSpec

SAGELLM_COMM_PLUGIN_API = "2.0"


class LoopbackTestBackend(CommBackend):
    name = "loopback-test"
    capabilities = Capabilities(
        ops=frozenset({"all_reduce"}), dtypes=frozenset({torch.float32}), devices=frozenset({"cpu"}),
        reduce_support={ReduceOp.SUM: frozenset({torch.float32})}, sub_groups=False, async_ops=False)

    def _init(self, rendezvous, options):
        if rendezvous.world_size != 1:
            raise BackendNotSupportedError("loopback-test is a world of one")
        return None

    def _destroy(self):
        pass

    def _all_reduce(self, tensor, op, group, async_op):
        return None


@hookimpl
def sagellm_comm_register_backends(registry):
    registry.register(BackendSpec(name="loopback-test", factory=LoopbackTestBackend, priority=-5,
                                  description="test-only loopback from a fake distribution"))
"""

# what the subprocess reports, as one JSON line on stdout
PROBE = textwrap.dedent("""
    import dataclasses, json, sys, warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import sagellm_comm
        from sagellm_comm.registry import plugin_manager
        statuses = [dataclasses.asdict(s) for s in sagellm_comm.list_comm_backends()]
        records = {n: dataclasses.asdict(r) for n, r in plugin_manager().records.items()}
    out = {"statuses": statuses, "records": records,
           "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}

    import torch

    def run(name):
        try:
            comm = sagellm_comm.get_comm_backend(name)
        except sagellm_comm.CommError as exc:
            return {"error": exc.code.value, "message": exc.message}
        comm.init_process_group(world_size=1, rank=0)
        try:
            t = torch.tensor([1.5, 2.5])
            comm.all_reduce(t, op="sum")
            return {"backend": comm.name, "result": t.tolist()}
        finally:
            comm.destroy()

    out["runs"] = {name: run(name) for name in sys.argv[1:]}
    print("PROBE " + json.dumps(out))
""")


def _write_dist(root: Path, dist: str, module: str, source: str, entry: str) -> None:
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[sagellm_comm.plugins]\n{entry} = {module}\n")


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fake_plugins")
    _write_dist(root, "broken-sagellm-plugin", "broken_sagellm_plugin", BROKEN_MODULE, "broken")
    _write_dist(root, "hookfail-sagellm-plugin", "hookfail_sagellm_plugin", HOOKFAIL_MODULE, "hookfail")
    _write_dist(root, "loopback-sagellm-plugin", "loopback_sagellm_plugin", LOOPBACK_MODULE, "loopback")
    return root


def _env(plugin_path: Path, **extra: str) -> dict[str, str]:
    drop = {
        "SAGELLM_COMM_PLUGINS",
        "SAGELLM_COMM_DISABLE_PLUGINS",
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "PYTHONWARNINGS",
    }
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin_path), os.environ.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


CLI_INFO = [sys.executable, "-m", "sagellm_comm.cli.main", "info"]
PROBED = ("gloo", "loopback-test", "hookfail-backend", "broken")


@pytest.fixture(scope="module")
def runs(plugin_path) -> dict[str, subprocess.CompletedProcess]:
    """Every subprocess of this module, started at once (each one pays a torch import)."""
    probe = [sys.executable, "-c", PROBE, *PROBED]
    jobs = {
        "default": (probe, _env(plugin_path)),
        "allow": (probe, _env(plugin_path, SAGELLM_COMM_PLUGINS="gloo")),
        "disable": (probe, _env(plugin_path, SAGELLM_COMM_DISABLE_PLUGINS="gloo,broken")),
        "cli": (CLI_INFO, _env(plugin_path, COLUMNS="250")),
    }
    procs = {
        name: subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (args, env) in jobs.items()
    }
    done = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=180)
            done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def _probe_result(runs: dict[str, subprocess.CompletedProcess], name: str) -> dict:
    proc = runs[name]
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")][-1]
    return json.loads(line.removeprefix("PROBE "))


# ----------------------------------------------------------------------------------------------------------
# all plugins allowed: the broken ones are reported, the others work
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def default_probe(runs) -> dict:
    return _probe_result(runs, "default")


def test_broken_plugin_is_listed_as_failed_to_load(default_probe):
    by_name = {s["name"]: s for s in default_probe["statuses"]}
    broken = by_name["broken"]
    assert broken["available"] is False
    assert "failed to load" in broken["reason"]
    assert "broken-sagellm-plugin" in broken["reason"]
    assert BROKEN_ERROR in broken["reason"] and "ImportError" in broken["reason"]
    rec = default_probe["records"]["broken"]
    assert rec["status"] == "failed" and rec["version"] == "0.1"
    assert rec["distribution"] == "broken-sagellm-plugin"
    assert "import failed" in rec["error"]
    assert "broken_sagellm_plugin.py" in rec["traceback"]


def test_broken_plugin_issues_a_warning(default_probe):
    warned = [w for w in default_probe["warnings"] if w.startswith("RuntimeWarning") and "'broken'" in w]
    assert len(warned) == 1
    assert "failed to load" in warned[0] and BROKEN_ERROR in warned[0]


def test_gloo_still_works_next_to_a_broken_plugin(default_probe):
    by_name = {s["name"]: s for s in default_probe["statuses"]}
    assert by_name["gloo"]["available"] is True
    assert default_probe["records"]["gloo"]["status"] == "loaded"
    assert default_probe["records"]["gloo"]["backends"] == ["gloo"]
    assert default_probe["runs"]["gloo"] == {"backend": "gloo", "result": [1.5, 2.5]}
    # asking for the broken plugin by name says why it is missing
    run = default_probe["runs"]["broken"]
    assert run["error"] == ErrorCode.COMM_BACKEND_NOT_SUPPORTED.value
    assert "failed to load" in run["message"] and BROKEN_ERROR in run["message"]


def test_raising_registration_hook_is_failed_and_registers_nothing(default_probe):
    rec = default_probe["records"]["hookfail"]
    assert rec["status"] == "failed"
    assert rec["backends"] == []
    assert "registration failed" in rec["error"] and HOOK_ERROR in rec["error"]
    names = {s["name"] for s in default_probe["statuses"]}
    assert "hookfail-backend" not in names  # rolled back
    status = {s["name"]: s for s in default_probe["statuses"]}["hookfail"]
    assert status["available"] is False and "failed to load" in status["reason"]
    assert any("'hookfail'" in w and HOOK_ERROR in w for w in default_probe["warnings"])
    assert default_probe["runs"]["hookfail-backend"]["error"] == ErrorCode.COMM_BACKEND_NOT_SUPPORTED.value


def test_good_fake_plugin_registers_its_backend(default_probe):
    status = {s["name"]: s for s in default_probe["statuses"]}["loopback-test"]
    assert status["available"] is True
    assert status["plugin"] == "loopback"
    assert status["description"] == "test-only loopback from a fake distribution"
    assert status["capabilities"]["ops"] == ["all_reduce"]
    rec = default_probe["records"]["loopback"]
    assert rec["status"] == "loaded" and rec["backends"] == ["loopback-test"]
    assert rec["distribution"] == "loopback-sagellm-plugin"
    assert default_probe["runs"]["loopback-test"] == {"backend": "loopback-test", "result": [1.5, 2.5]}


# ----------------------------------------------------------------------------------------------------------
# the CLI shows the same
# ----------------------------------------------------------------------------------------------------------
def test_cli_info_shows_failed_plugin_and_available_gloo(runs):
    # needs packages/comm-core/src/sagellm_comm/cli/main.py (python -m sagellm_comm.cli.main info)
    proc = runs["cli"]
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Traceback" not in proc.stderr  # reported, not crashed
    # the broken plugin: named, marked failed, with its error text
    failed_lines = [ln for ln in out.splitlines() if "broken" in ln and BROKEN_ERROR in ln]
    assert any("fail" in ln.lower() for ln in failed_lines), out
    assert any("hookfail" in ln and HOOK_ERROR in ln for ln in out.splitlines()), out
    # gloo: listed and available
    gloo_rows = [ln.replace("│", " ").split() for ln in out.splitlines()]
    gloo_rows = [cells for cells in gloo_rows if cells[:1] == ["gloo"]]
    assert any("yes" in cells for cells in gloo_rows), out
    assert any("loaded" in cells for cells in gloo_rows), out


# ----------------------------------------------------------------------------------------------------------
# choosing plugins with the environment
# ----------------------------------------------------------------------------------------------------------
def test_allow_list_loads_only_gloo(runs):
    probe = _probe_result(runs, "allow")
    records = probe["records"]
    assert records["gloo"]["status"] == "loaded"
    for name in ("broken", "hookfail", "loopback"):
        assert records[name]["status"] == "disabled", records[name]
        assert "SAGELLM_COMM_PLUGINS" in records[name]["error"]
    assert [s["name"] for s in probe["statuses"]] == ["gloo"]  # disabled is not failed: nothing else listed
    assert not any(w.startswith("RuntimeWarning") for w in probe["warnings"]), probe["warnings"]
    assert probe["runs"]["gloo"] == {"backend": "gloo", "result": [1.5, 2.5]}
    assert probe["runs"]["loopback-test"]["error"] == ErrorCode.COMM_BACKEND_NOT_SUPPORTED.value
    # the loopback plugin provides loopback-test: the error says it was installed but not loaded, and why
    message = probe["runs"]["loopback-test"]["message"]
    assert "'loopback'" in message and "(disabled: not listed in SAGELLM_COMM_PLUGINS" in message, message


def test_disable_list_removes_gloo(runs):
    probe = _probe_result(runs, "disable")
    records = probe["records"]
    assert records["gloo"]["status"] == "disabled"
    assert records["broken"]["status"] == "disabled"
    assert records["loopback"]["status"] == "loaded"
    run = probe["runs"]["gloo"]
    assert run["error"] == ErrorCode.COMM_BACKEND_NOT_SUPPORTED.value
    assert "unknown comm backend 'gloo'" in run["message"]
    assert "loopback-test" in run["message"]  # the message lists the backends that are known
    assert probe["runs"]["loopback-test"]["result"] == [1.5, 2.5]


# ----------------------------------------------------------------------------------------------------------
# in-process plugin objects (register_plugin): same isolation, no subprocess needed
# ----------------------------------------------------------------------------------------------------------
def test_in_process_plugin_with_raising_hook_is_isolated():
    from sagellm_comm import list_comm_backends
    from sagellm_comm.plugins import hookimpl
    from sagellm_comm.registry import backend_registry, plugin_manager, register_plugin
    from sagellm_comm_gloo import GlooBackend

    class Exploding:
        @hookimpl
        def sagellm_comm_register_backends(self, registry):
            registry.register("exploding-backend", GlooBackend)
            raise ValueError("in-process hook failure")

    class Good:
        @hookimpl
        def sagellm_comm_register_backends(self, registry):
            registry.register("inproc-good", GlooBackend, description="registered by an object")

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bad = register_plugin(Exploding(), "exploding-test")
        assert bad.status == "failed" and bad.backends == []
        assert "registration failed: ValueError: in-process hook failure" in bad.error
        assert any("exploding-test" in str(w.message) for w in caught)
        assert backend_registry().get("exploding-backend") is None
        assert not plugin_manager().pm.has_plugin("exploding-test")

        good = register_plugin(Good(), "good-test")
        assert good.status == "loaded" and good.backends == ["inproc-good"]
        by_name = {s.name: s for s in list_comm_backends()}
        assert by_name["inproc-good"].plugin == "good-test"
        assert by_name["exploding-test"].available is False
        assert "failed to load" in by_name["exploding-test"].reason
        assert by_name["gloo"].available is True
    finally:
        manager = plugin_manager()
        for name in ("exploding-test", "good-test"):
            manager.records.pop(name, None)
            if manager.pm.has_plugin(name):
                manager.pm.unregister(name=name)
        backend_registry().unregister("inproc-good")
