"""The plugin API version check at load: an entry point's module declares ``SAGELLM_COMM_PLUGIN_API``; the core
registers it only with the same major and a minor no newer than its own ``PLUGIN_API_VERSION``. Otherwise (or with no
declaration) the plugin is skipped: status ``incompatible``, a reason saying what to install, one warning, and
``sagellm-comm info`` / ``list_comm_backends()`` / ``get_comm_backend`` show it.

Each plugin here is a real distribution: a throwaway ``*.dist-info`` with an ``entry_points.txt`` in a temporary
directory put on ``sys.path``, found by ``importlib.metadata`` as an installed wheel would be. Only these plugins are
allowed to load (``SAGELLM_COMM_PLUGINS``), in this process: no rank processes.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

from sagellm_comm import BackendNotSupportedError, get_comm_backend, list_comm_backends
from sagellm_comm.plugins import PLUGIN_API_VERSION, manager
from sagellm_comm.registry import plugin_manager, register_plugin, reload_plugins

MAJOR, MINOR = (int(x) for x in PLUGIN_API_VERSION.split("."))

PLUGIN_SOURCE = """
from sagellm_comm.plugins import hookimpl
from sagellm_comm.registry import BackendSpec
{declaration}

@hookimpl
def sagellm_comm_register_backends(registry):
    registry.register(BackendSpec(name={backend!r}, factory="core_alone_tasks:LoopbackBackend",
                                  description="plugin API test fixture"))
"""


def install_fake_plugin(root: Path, entry: str, declared: str | None) -> str:
    """A distribution ``apitest-ENTRY`` 0.1 whose entry point ``ENTRY`` names module ``apitest_ENTRY_plugin``,
    declaring ``declared`` (or nothing). Returns the backend name it registers when loaded."""
    module = f"apitest_{entry.replace('-', '_')}_plugin"
    backend = f"{entry}-backend"
    declaration = "" if declared is None else f"SAGELLM_COMM_PLUGIN_API = {declared!r}"
    (root / f"{module}.py").write_text(PLUGIN_SOURCE.format(declaration=declaration, backend=backend))
    info = root / f"apitest_{entry.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: apitest-{entry}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[sagellm_comm.plugins]\n{entry} = {module}\n")
    return backend


@pytest.fixture
def plugins_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A site directory for throwaway distributions; only the entry points named in ``allow(...)`` load."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def allow(*entries: str) -> None:
        names.extend(entries)
        monkeypatch.setenv("SAGELLM_COMM_PLUGINS", ",".join(names))
        reload_plugins()

    monkeypatch.delenv("SAGELLM_COMM_DISABLE_PLUGINS", raising=False)
    yield tmp_path, allow
    for mod in [m for m in sys.modules if m.startswith("apitest_")]:
        del sys.modules[mod]
    reload_plugins()


def load(allow, *entries: str) -> tuple[dict, list[str]]:
    allow(*entries)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = dict(plugin_manager().records)
    return records, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_same_version_loads(plugins_dir):
    root, allow = plugins_dir
    backend = install_fake_plugin(root, "same", PLUGIN_API_VERSION)
    records, warned = load(allow, "same")
    rec = records["same"]
    assert (rec.status, rec.error, rec.api, rec.backends) == ("loaded", "", PLUGIN_API_VERSION, [backend])
    assert rec.distribution == "apitest-same" and not warned
    assert {s.name: s for s in list_comm_backends()}[backend].available


def test_older_minor_of_the_same_major_loads(plugins_dir, monkeypatch):
    """A core at MAJOR.(MINOR+2) still loads a plugin written for MAJOR.(MINOR+1): minors only add."""
    root, allow = plugins_dir
    monkeypatch.setattr(manager, "PLUGIN_API_VERSION", f"{MAJOR}.{MINOR + 2}")
    install_fake_plugin(root, "older", f"{MAJOR}.{MINOR + 1}")
    records, warned = load(allow, "older")
    assert records["older"].status == "loaded" and not warned


def test_newer_minor_is_incompatible_and_says_upgrade_the_core(plugins_dir):
    root, allow = plugins_dir
    newer = f"{MAJOR}.{MINOR + 1}"
    backend = install_fake_plugin(root, "newer", newer)
    records, warned = load(allow, "newer")
    rec = records["newer"]
    assert rec.status == "incompatible" and rec.api == newer and rec.backends == []
    assert f"written for plugin API {newer}, newer than this core's {PLUGIN_API_VERSION}" in rec.error
    assert "pip install -U isagellm-comm-core" in rec.error
    assert len(warned) == 1 and "'newer' (apitest-newer) is incompatible" in warned[0] and rec.error in warned[0]
    # nothing registered: not listed as a backend, and asking for it gives the reason
    statuses = {s.name: s for s in list_comm_backends()}
    assert backend not in statuses
    assert not statuses["newer"].available and "is incompatible with this core" in statuses["newer"].reason
    with pytest.raises(BackendNotSupportedError) as info:
        get_comm_backend("newer")
    assert rec.error in info.value.message


@pytest.mark.parametrize("other", [MAJOR - 1, MAJOR + 1])
def test_other_major_is_incompatible(plugins_dir, other):
    root, allow = plugins_dir
    declared = f"{other}.0"
    install_fake_plugin(root, "othermajor", declared)
    records, warned = load(allow, "othermajor")
    rec = records["othermajor"]
    assert rec.status == "incompatible" and rec.api == declared and len(warned) == 1
    assert f"written for plugin API {declared}" in rec.error
    if other < MAJOR:  # an old plugin: upgrade it, or use the old core
        assert "pip install -U apitest-othermajor" in rec.error
        assert f"an isagellm-comm-core that speaks plugin API {other}.x" in rec.error
    else:
        assert "pip install -U isagellm-comm-core" in rec.error


def test_missing_declaration_is_incompatible(plugins_dir):
    root, allow = plugins_dir
    install_fake_plugin(root, "undeclared", None)
    records, warned = load(allow, "undeclared")
    rec = records["undeclared"]
    assert rec.status == "incompatible" and rec.api == "" and len(warned) == 1
    assert "apitest_undeclared_plugin declares no plugin API version (SAGELLM_COMM_PLUGIN_API)" in rec.error
    assert "pip install -U apitest-undeclared" in rec.error
    assert f'SAGELLM_COMM_PLUGIN_API = "{PLUGIN_API_VERSION}"' in rec.error


def test_malformed_declaration_is_incompatible(plugins_dir):
    root, allow = plugins_dir
    install_fake_plugin(root, "malformed", "two")
    records, _ = load(allow, "malformed")
    assert records["malformed"].status == "incompatible"
    assert "not a 'MAJOR.MINOR' string" in records["malformed"].error


def test_an_incompatible_plugin_does_not_stop_the_others_and_info_shows_why(plugins_dir, capsys):
    from sagellm_comm.cli.info import collect_info, render_info

    root, allow = plugins_dir
    good = install_fake_plugin(root, "good", PLUGIN_API_VERSION)
    install_fake_plugin(root, "bad", f"{MAJOR + 1}.0")
    allow("good", "bad")
    data = collect_info()
    plugins = {p["name"]: p for p in data["plugins"]}
    assert plugins["good"]["status"] == "loaded" and plugins["good"]["backends"] == [good]
    assert plugins["bad"]["status"] == "incompatible" and plugins["bad"]["api"] == f"{MAJOR + 1}.0"
    assert data["versions"]["plugin API"] == PLUGIN_API_VERSION
    render_info(data)
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("INCOMPATIBLE plugin 'bad' (apitest-bad): "))
    assert plugins["bad"]["error"] in line  # the whole reason, on one line


def test_in_process_objects_default_to_the_core_api_but_a_declared_one_is_checked(plugins_dir):
    _, allow = plugins_dir
    allow()  # no entry point at all

    class Undeclared:
        pass

    class Declared:
        SAGELLM_COMM_PLUGIN_API = f"{MAJOR + 1}.0"

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        undeclared = register_plugin(Undeclared(), "inproc-undeclared")
        declared = register_plugin(Declared(), "inproc-declared")
    assert undeclared.status == "loaded" and undeclared.api == PLUGIN_API_VERSION
    assert declared.status == "incompatible" and "pip install -U isagellm-comm-core" in declared.error
