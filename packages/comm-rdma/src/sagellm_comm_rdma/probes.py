"""Availability of the rdma backend, answered without importing NIXL (it loads ~200 MB of libraries)."""

from __future__ import annotations

import importlib.util
import os

__all__ = ["available"]


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    dist = module.replace("_", "-")
    try:
        return f"{dist} {version(dist)}"
    except PackageNotFoundError:
        return module


def available() -> tuple[bool, str]:
    for module in ("nixl_cu13", "nixl_cu12"):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = os.path.dirname(next(iter(spec.submodule_search_locations)))
        plugins = os.path.join(root, f".{module}.mesonpy.libs", "plugins")
        if os.path.isdir(plugins) and not any(f.startswith("libplugin_UCX") for f in os.listdir(plugins)):
            return False, f"{module} is installed without its UCX plugin ({plugins}); reinstall nixl-cu12"
        return True, f"{_version(module)} (UCX backend: RDMA verbs, shared memory or TCP per peer)"
    return False, "NIXL is not installed: pip install 'isagellm-comm[rdma]' (pulls nixl-cu12; nixl-cu13 for CUDA 13)"
