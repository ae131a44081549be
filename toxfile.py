"""tox's inline plugin: one environment per package folder, so adding a plugin never touches tox.ini.

``packages/comm-<name>/`` gives the environment ``<name>``: the core plus that package alone, running the package's
own tests (see the ``[testenv]`` rule in tox.ini). ``tox -e ALL`` (what CI runs) runs every one of them.
"""

from __future__ import annotations

from pathlib import Path

from tox.plugin import impl

PACKAGES = Path(__file__).resolve().parent / "packages"


def package_envs() -> list[str]:
    return sorted(p.name.removeprefix("comm-") for p in PACKAGES.glob("comm-*") if (p / "pyproject.toml").is_file())


@impl
def tox_extend_envs() -> list[str]:
    return package_envs()
