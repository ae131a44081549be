"""The layering rules, checked on the source and on a live process:

- no module of the core imports a plugin (the core knows plugins only through entry points and hooks);
- plugins use the core's public modules only (no ``sagellm_comm._private`` imports);
- listing backends and ``sagellm-comm info`` import no engine: only each plugin's entry module and its probes;
- every package pins the core's release series it is written for (a range holding the current core, closed above),
  and every entry module (in-tree plugins, the core's own, the out-of-tree example) declares a plugin API version
  this core speaks.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from sagellm_comm import __version__ as core_version
from sagellm_comm.plugins import API_ATTRIBUTE, ENTRY_POINT_GROUP, plugin_api_problem

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "packages" / "comm-core" / "src" / "sagellm_comm"
PLUGINS = sorted(p for p in (ROOT / "packages").glob("comm-*/src/sagellm_comm_*") if p.is_dir())


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return names


def test_no_core_module_imports_a_plugin() -> None:
    found = {
        str(p.relative_to(ROOT)): name
        for p in CORE.rglob("*.py")
        for name in _imports(p)
        if name.split(".")[0].startswith("sagellm_comm_")
    }
    assert not found, f"core modules importing plugins: {found}"


def test_plugins_use_the_public_core_only() -> None:
    assert PLUGINS, "no plugin packages found"
    private = {}
    for pkg in PLUGINS:
        for p in pkg.rglob("*.py"):
            for name in _imports(p):
                parts = name.split(".")
                if parts[0] == "sagellm_comm" and any(part.startswith("_") for part in parts[1:]):
                    private[str(p.relative_to(ROOT))] = name
    assert not private, f"plugins importing private core names: {private}"


ENGINE_MODULES = {
    "backend",
    "kinds",
    "engine",
    "p2p",
    "sync",
    "reduce_kernels",
    "progress",
    "profiler",
    "draw",
    "gather",
    "local",
    "cluster",
    "binding",
    "direct",
    "communicator",
}

PROBE = """
import json, sys
from sagellm_comm import list_comm_backends
from sagellm_comm.cli.info import collect_info
listed = [s.name for s in list_comm_backends()]
collect_info()
print(json.dumps({"listed": listed, "modules": sorted(sys.modules)}))
"""


def test_listing_backends_and_info_import_no_engine() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.splitlines()[-1])
    assert {"gloo", "shm"} <= set(data["listed"])
    loaded = data["modules"]
    engines = [m for m in loaded if m.startswith("sagellm_comm_") and m.rsplit(".", 1)[-1] in ENGINE_MODULES]
    assert not engines, f"listing imported engine modules: {engines}"
    heavy = [
        m
        for m in (
            "matplotlib",
            "networkx",
            "sagellm_comm.engines.torch_distributed",
            "sagellm_comm.benchmark",
            "sagellm_comm.algorithms",
        )
        if m in loaded
    ]
    assert not heavy, f"listing imported {heavy}"
    entry = {m for m in loaded if m.startswith("sagellm_comm_") and m.endswith(".plugin")}
    assert {"sagellm_comm_gloo.plugin", "sagellm_comm_cxl_ub.plugin"} <= entry


def test_test_modules_have_unique_names() -> None:
    """One pytest run imports every test folder's helpers by bare module name (rootdir-relative sys.path): two
    helpers with the same name would silently shadow each other, so each name may exist once."""
    seen: dict[str, list[str]] = {}
    for folder in [ROOT / "tests", *sorted((ROOT / "packages").glob("comm-*/tests"))]:
        for p in folder.rglob("*.py"):
            if "fixtures" not in p.parts and p.name != "conftest.py":
                seen.setdefault(p.name, []).append(str(p.relative_to(ROOT)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not clashes, f"test modules sharing a name: {clashes}"


PYPROJECTS = sorted((ROOT / "packages").glob("comm-*/pyproject.toml")) + sorted(ROOT.glob("examples/*/pyproject.toml"))


def test_every_package_pins_the_core_series() -> None:
    """``isagellm-comm-core>=X.Y,<X.(Y+1)`` (and the same for a plugin on another plugin: rccl on nccl): the range
    holds the current core and closes before the next minor, whose contract may differ."""
    core = Version(core_version)
    next_minor = Version(f"{core.major}.{core.minor + 1}.0")
    checked, bad = [], {}
    for path in PYPROJECTS:
        project = tomllib.loads(path.read_text())["project"]
        if project["name"] == "isagellm-comm-core":
            continue
        ours = [Requirement(d) for d in project.get("dependencies", []) if d.startswith("isagellm-comm-")]
        if not any(r.name == "isagellm-comm-core" for r in ours):
            bad[str(path.relative_to(ROOT))] = "no dependency on isagellm-comm-core"
        for req in ours:
            if core not in req.specifier or next_minor in req.specifier:
                bad[f"{path.relative_to(ROOT)}: {req}"] = f"must hold {core} and exclude {next_minor}"
        checked.append(project["name"])
    assert not bad, bad
    assert len(checked) >= 8, checked


def test_the_meta_distribution_pins_every_package_to_the_core_series() -> None:
    """``pip install 'isagellm-comm[x]'`` never pairs this release with a plugin or core of another minor series."""
    core = Version(core_version)
    next_minor = Version(f"{core.major}.{core.minor + 1}.0")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [*meta["dependencies"], *(d for deps in meta["optional-dependencies"].values() for d in deps)]
    ours = [Requirement(d) for d in lines if d.startswith("isagellm-comm")]
    bad = [str(r) for r in ours if core not in r.specifier or next_minor in r.specifier]
    assert not bad, f"must hold {core} and exclude {next_minor}: {bad}"
    assert len(ours) == len(lines) >= 10, lines


def test_every_entry_module_declares_a_plugin_api_this_core_speaks() -> None:
    found, bad = [], {}
    for path in PYPROJECTS:
        pkg = path.parent
        entries = tomllib.loads(path.read_text())["project"].get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
        for name, value in entries.items():
            module = value.partition(":")[0]
            source = (pkg / "src" / Path(*module.split("."))).with_suffix(".py")
            declared = None
            for node in ast.parse(source.read_text()).body:
                if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == API_ATTRIBUTE for t in node.targets
                ):
                    declared = ast.literal_eval(node.value)
            problem = plugin_api_problem(declared, module, "")
            if problem:
                bad[f"{pkg.relative_to(ROOT)}: {name}"] = problem
            found.append(name)
    assert not bad, bad
    assert {"hier", "gloo", "cxl-ub", "nccl", "rccl", "hccl", "rdma", "topology"} <= set(found), found
