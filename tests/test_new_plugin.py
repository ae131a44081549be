"""``tools/new-plugin``: the generated skeleton builds, installs from its wheel alone, registers its backend, and is
gated honestly (the conformance gate exits 7, "nothing verified"; its own tests pass with every op test skipped)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from wheel_install import build_wheel, env_with, install_into, run_python

from sagellm_comm import __version__ as core_version
from sagellm_comm.plugins import PLUGIN_API_VERSION

ROOT = Path(__file__).resolve().parent.parent
NEW_PLUGIN = ROOT / "tools" / "new-plugin"
TEMPLATE = ROOT / "tools" / "plugin-template"
EXIT_NOTHING_VERIFIED = 7  # sagellm_comm.testing.__main__.EXIT_NOTHING_VERIFIED

EXPECTED_FILES = {
    "README.md",
    "pyproject.toml",
    "src/sagellm_comm_demo/__init__.py",
    "src/sagellm_comm_demo/_version.py",
    "src/sagellm_comm_demo/backend.py",
    "src/sagellm_comm_demo/plugin.py",
    "src/sagellm_comm_demo/probes.py",
    "tests/test_demo_conformance.py",
    "tests/test_demo_plugin.py",
}


def new_plugin(*args: str | Path, script: Path = NEW_PLUGIN) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, timeout=60)


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@dataclass
class Demo:
    base: Path
    pkg: Path
    site: Path
    stdout: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """``tools/new-plugin demo`` out of tree, built into a wheel and installed into a private site directory."""
    base = tmp_path_factory.mktemp("new_plugin")
    pkg = base / "comm-demo"
    proc = new_plugin("demo", "--out", pkg)
    assert proc.returncode == 0, proc.stderr
    wheel = build_wheel(pkg, base / "dist")
    site = base / "site"
    install_into(site, wheel)
    return Demo(base, pkg, site, proc.stdout)


def test_generated_tree(demo: Demo) -> None:
    pkg = demo.pkg
    assert files_under(pkg) == EXPECTED_FILES
    for path in pkg.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), f"unrendered placeholder in {path}"
    meta = tomllib.loads((pkg / "pyproject.toml").read_text())
    project = meta["project"]
    assert project["name"] == "isagellm-comm-demo"
    assert project["dynamic"] == ["version"]
    assert project["requires-python"] == "==3.11.*"
    # the core's minor series at generation time, and the plugin API it speaks
    major, minor = (int(x) for x in core_version.split(".")[:2])
    assert project["dependencies"] == [f"isagellm-comm-core>={major}.{minor},<{major}.{minor + 1}", "torch>=2.4"]
    assert f'SAGELLM_COMM_PLUGIN_API = "{PLUGIN_API_VERSION}"' in (pkg / "src/sagellm_comm_demo/plugin.py").read_text()
    assert project["optional-dependencies"]["testing"] == ["isagellm-comm-core[testing]"]
    assert project["entry-points"]["sagellm_comm.plugins"] == {"demo": "sagellm_comm_demo.plugin"}
    assert meta["tool"]["hatch"]["version"]["path"] == "src/sagellm_comm_demo/_version.py"
    assert meta["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["src/sagellm_comm_demo"]
    # out of tree: the core comes from the index, not from a workspace that is not there
    assert "uv" not in meta["tool"]
    backend = (pkg / "src/sagellm_comm_demo/backend.py").read_text()
    assert "class DemoBackend(CommBackend):" in backend
    assert 'name: ClassVar[str] = "demo"' in backend
    for path in pkg.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    # the next steps are printed, for an out-of-tree package
    assert "python -m sagellm_comm.testing demo" in demo.stdout
    assert "src/sagellm_comm_demo/backend.py" in demo.stdout


def test_in_workspace_package_uses_workspace_core(tmp_path: Path) -> None:
    """The repository root is found from the script's own location: a copy of tools/ in another tree generates
    packages/comm-NAME there, with the workspace source of the core and the workspace next steps."""
    fake = tmp_path / "repo"
    (fake / "packages").mkdir(parents=True)
    (fake / "tools").mkdir()
    shutil.copy2(NEW_PLUGIN, fake / "tools" / "new-plugin")
    shutil.copytree(TEMPLATE, fake / "tools" / "plugin-template")
    proc = new_plugin("my-accel", script=fake / "tools" / "new-plugin")
    assert proc.returncode == 0, proc.stderr
    pkg = fake / "packages" / "comm-my-accel"
    meta = tomllib.loads((pkg / "pyproject.toml").read_text())
    assert meta["tool"]["uv"]["sources"] == {"isagellm-comm-core": {"workspace": True}}
    assert meta["project"]["entry-points"]["sagellm_comm.plugins"] == {"my-accel": "sagellm_comm_my_accel.plugin"}
    assert "class MyAccelBackend(CommBackend):" in (pkg / "src/sagellm_comm_my_accel/backend.py").read_text()
    assert (pkg / "tests/test_my_accel_conformance.py").is_file()
    assert "uv run tox -e my-accel" in proc.stdout and "uv lock && uv sync" in proc.stdout


def test_installed_wheel_registers_and_gate_verifies_nothing(demo: Demo) -> None:
    env = env_with(demo.site)
    listed = run_python(
        [
            "-c",
            "import json; from sagellm_comm import list_comm_backends; "
            "print(json.dumps({s.name: [s.available, s.plugin, s.reason] "
            "for s in list_comm_backends()}))",
        ],
        env,
        timeout=120,
        cwd=demo.base,
    )
    assert listed.returncode == 0, listed.stderr
    statuses = json.loads(listed.stdout.strip().splitlines()[-1])
    assert statuses["demo"][:2] == [True, "demo"], statuses.get("demo")

    gate = run_python(
        ["-m", "sagellm_comm.testing", "demo", "--comm-world-sizes", "1", "-q"], env, timeout=240, cwd=demo.base
    )
    assert gate.returncode == EXIT_NOTHING_VERIFIED, f"{gate.stdout[-3000:]}\n{gate.stderr[-3000:]}"
    assert "declares no ops" in gate.stderr and "nothing is supported" in gate.stderr, gate.stderr[-3000:]


def test_generated_tests_pass(demo: Demo) -> None:
    pkg = demo.pkg
    proc = run_python(
        [
            "-m",
            "pytest",
            str(pkg / "tests"),
            "-p",
            "no:cacheprovider",
            "-q",
            "-c",
            str(pkg / "pyproject.toml"),
            "--rootdir",
            str(pkg),
            "--comm-world-sizes",
            "1",
        ],
        env_with(demo.site),
        timeout=240,
        cwd=pkg,
    )
    tail = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and " skipped" in tail and "failed" not in tail, tail


@pytest.mark.parametrize("name", ["Bad_Name", "core", "auto", "demo-", "1demo", "d"])
def test_bad_name_is_usage_error(tmp_path: Path, name: str) -> None:
    proc = new_plugin(name, "--out", tmp_path / "out")
    assert proc.returncode == 2, proc
    assert "invalid plugin name" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_existing_directory_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "comm-demo"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = new_plugin("demo", "--out", out)
    assert proc.returncode != 0
    assert "--force" in proc.stderr
    assert files_under(out) == {"keep.txt"}

    forced = new_plugin("demo", "--out", out, "--force")
    assert forced.returncode == 0, forced.stderr
    assert files_under(out) == EXPECTED_FILES | {"keep.txt"}
    assert (out / "keep.txt").read_text() == "mine"


def test_missing_name_is_usage_error() -> None:
    proc = new_plugin()
    assert proc.returncode == 2
    assert "usage" in proc.stderr
