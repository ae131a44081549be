"""Profiles on disk, one JSON file per topology fingerprint, one entry per backend.

Directory: ``$SAGELLM_COMM_TOPOLOGY_CACHE``, else ``$XDG_CACHE_HOME/sagellm-comm/topology``, else
``~/.cache/sagellm-comm/topology``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sagellm_comm_topology.model import dump_json

__all__ = ["CACHE_ENV", "ProfileCache", "cache_dir"]

CACHE_ENV = "SAGELLM_COMM_TOPOLOGY_CACHE"


def cache_dir() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sagellm-comm" / "topology"


class ProfileCache:
    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else cache_dir()

    def path(self, fingerprint: str) -> Path:
        return self.directory / f"{fingerprint}.json"

    def _read(self, fingerprint: str) -> dict[str, Any]:
        try:
            with open(self.path(fingerprint)) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) and data.get("fingerprint") == fingerprint else {}

    def load(self, fingerprint: str, backend: str | None = None) -> dict[str, Any] | None:
        """The cached profile for this fingerprint and backend (None: the most recent of any backend)."""
        profiles = self._read(fingerprint).get("profiles", {})
        if backend is not None:
            return profiles.get(backend)
        if not profiles:
            return None
        return max(profiles.values(), key=lambda p: p.get("created", 0))

    def store(self, profile: dict[str, Any]) -> Path:
        fp = profile["fingerprint"]
        data = self._read(fp) or {"fingerprint": fp, "profiles": {}}
        data["profiles"][profile["backend"]] = profile
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(fp)
        dump_json(data, path)
        return path
