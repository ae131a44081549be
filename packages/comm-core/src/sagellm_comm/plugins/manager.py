"""Loads plugins from the ``sagellm_comm.plugins`` entry-point group, each in isolation.

A plugin that fails to import or whose hook raises is recorded (``PluginRecord.status == "failed"``, shown by
``list_comm_backends()`` and ``sagellm-comm info``) and a warning is issued; the other plugins load regardless.

Plugin API version: the core speaks ``PLUGIN_API_VERSION`` (``"MAJOR.MINOR"``; the major is the contract's). Every
entry module declares the one it was written for, ``SAGELLM_COMM_PLUGIN_API = "2.0"``, a module attribute read after
importing the (import-light) entry module and before its hooks are registered. Compatible: the same major and a minor
no newer than the core's. Anything else, or no declaration, is not registered: the record's status is
``"incompatible"`` with a reason that says which versions and what to install, and a warning is issued.

Environment:
- ``SAGELLM_COMM_PLUGINS``: comma-separated entry-point names to load (``none`` loads none); unset loads all.
- ``SAGELLM_COMM_DISABLE_PLUGINS``: comma-separated names to skip.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from sagellm_comm._version import __version__ as core_version
from sagellm_comm.plugins import hookspecs

ENTRY_POINT_GROUP = "sagellm_comm.plugins"
"""The entry-point group a plugin distribution registers its plugin module under."""
# the plugin API this core speaks: MAJOR.MINOR. The major is the contract version (hook specs, CommBackend's engine
# methods, BackendSpec); a minor adds hooks or fields without changing any. Plugins declare theirs in API_ATTRIBUTE.
PLUGIN_API_VERSION = "2.0"
"""The plugin API this core speaks, ``MAJOR.MINOR``: it loads plugins of the same major and a minor no newer."""
API_ATTRIBUTE = "SAGELLM_COMM_PLUGIN_API"
"""The attribute of a plugin's entry module that declares the plugin API version it was written for."""
ENV_ALLOW = "SAGELLM_COMM_PLUGINS"
ENV_BLOCK = "SAGELLM_COMM_DISABLE_PLUGINS"

__all__ = [
    "API_ATTRIBUTE",
    "ENTRY_POINT_GROUP",
    "PLUGIN_API_VERSION",
    "PluginRecord",
    "SagellmPluginManager",
    "plugin_api_problem",
]


@dataclass
class PluginRecord:
    """What loading one plugin entry point gave: its name, distribution and version, ``status`` (and ``error``
    and ``traceback`` when it did not load), and the backends it registered. ``sagellm-comm info`` shows these."""

    name: str
    distribution: str = ""
    version: str = ""
    status: str = "loaded"  # loaded | failed | disabled | incompatible
    error: str = ""
    traceback: str = ""
    backends: list[str] = field(default_factory=list)
    api: str = ""  # the plugin API version the entry module declares (SAGELLM_COMM_PLUGIN_API), "" if none


def _parse_api(value: object) -> tuple[int, int] | None:
    if not isinstance(value, str):
        return None
    major, dot, minor = value.strip().partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        return None
    return int(major), int(minor)


def plugin_api_problem(declared: object, module: str, distribution: str) -> str | None:
    """Why a plugin whose entry module ``module`` declares ``declared`` (its ``SAGELLM_COMM_PLUGIN_API``, None when
    missing) cannot be loaded by this core, or None when it is compatible: the same major as ``PLUGIN_API_VERSION``
    and a minor no newer than the core's."""
    core = _parse_api(PLUGIN_API_VERSION) or (0, 0)
    dist = distribution or "the plugin's distribution"
    speaks = f"this core (isagellm-comm-core {core_version}) speaks plugin API {PLUGIN_API_VERSION}"
    if declared is None:
        return (
            f"{module} declares no plugin API version ({API_ATTRIBUTE}): it predates the versioned plugin API, and "
            f"{speaks}; install a release written for plugin API {core[0]}.x (pip install -U {dist}), or, if you "
            f'maintain it, check it against the plugin guide and set {API_ATTRIBUTE} = "{PLUGIN_API_VERSION}" in '
            f"{module}"
        )
    api = _parse_api(declared)
    if api is None:
        return f"{module} declares {API_ATTRIBUTE} = {declared!r}, not a 'MAJOR.MINOR' string; {speaks}"
    if api[0] < core[0]:
        return (
            f"{module} is written for plugin API {declared}, and {speaks}: install a release of {dist} written for "
            f"plugin API {core[0]}.x (pip install -U {dist}), or use an isagellm-comm-core that speaks plugin API "
            f"{api[0]}.x"
        )
    if api[0] > core[0] or api[1] > core[1]:
        return (
            f"{module} is written for plugin API {declared}, newer than this core's {PLUGIN_API_VERSION} "
            f"(isagellm-comm-core {core_version}): upgrade the core (pip install -U isagellm-comm-core), or install a "
            f"release of {dist} written for plugin API {PLUGIN_API_VERSION}"
        )
    return None


def _names(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


class SagellmPluginManager:
    """A pluggy manager with the sagellm-comm hook specs and per-plugin error isolation."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}

    def load_entry_points(self, on_loaded: Callable[[str, Any], list[str]]) -> None:
        """Import every allowed entry point; ``on_loaded(name, plugin)`` runs its registration and returns the
        backend names it registered (it may raise: the plugin is then recorded as failed and unregistered)."""
        allow, block = _names(ENV_ALLOW), _names(ENV_BLOCK) or set()
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in self.records:
                continue  # the same name twice on sys.path: first wins
            rec = self._record(ep)
            self.records[ep.name] = rec
            if allow is not None and ep.name not in allow:
                rec.status, rec.error = "disabled", f"not listed in {ENV_ALLOW}={os.environ[ENV_ALLOW]!r}"
                continue
            if ep.name in block:
                rec.status, rec.error = "disabled", f"listed in {ENV_BLOCK}={os.environ[ENV_BLOCK]!r}"
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self._fail(rec, exc, "import")
                continue
            module = ep.value.partition(":")[0].strip()
            # the entry module's attribute (also when the entry point names an object inside it)
            declared = getattr(plugin, API_ATTRIBUTE, getattr(sys.modules.get(module), API_ATTRIBUTE, None))
            rec.api = declared if isinstance(declared, str) else ""
            problem = plugin_api_problem(declared, module, rec.distribution)
            if problem is not None:
                self._incompatible(rec, problem)
                continue
            try:
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:
                self._fail(rec, exc, "import")
                continue
            try:
                rec.backends = on_loaded(ep.name, plugin)
            except Exception as exc:
                self.pm.unregister(name=ep.name)
                self._fail(rec, exc, "registration")

    def register_object(self, plugin: Any, name: str, on_loaded: Callable[[str, Any], list[str]]) -> PluginRecord:
        """Register an in-process plugin object (tests, embedding applications). It is built against the running
        core, so a missing ``SAGELLM_COMM_PLUGIN_API`` is taken as the core's own; a declared one is checked as an
        entry point's is."""
        rec = PluginRecord(name=name, distribution="in-process")
        self.records[name] = rec
        declared = getattr(plugin, API_ATTRIBUTE, None)
        rec.api = declared if isinstance(declared, str) else PLUGIN_API_VERSION
        if declared is not None:
            problem = plugin_api_problem(declared, getattr(plugin, "__name__", repr(plugin)), "")
            if problem is not None:
                self._incompatible(rec, problem)
                return rec
        self.pm.register(plugin, name=name)
        try:
            rec.backends = on_loaded(name, plugin)
        except Exception as exc:
            self.pm.unregister(name=name)
            self._fail(rec, exc, "registration")
        return rec

    # -- calling hooks: always through pluggy, which binds only the arguments an implementation declares ----------
    def call_plugin(self, plugin_name: str, hook_name: str, **kwargs: Any) -> Any:
        """One plugin's implementation of a hook, called by pluggy; for a ``firstresult`` hook its answer, else
        its single result (None if it returned None or does not implement the hook)."""
        hook = getattr(self.pm.hook, hook_name)
        others = [p for name, p in self.pm.list_name_plugin() if name != plugin_name]
        out = self.pm.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)
        if hook.spec is not None and hook.spec.opts.get("firstresult"):
            return out
        return out[0] if out else None

    def implementers(self, hook_name: str) -> list[str]:
        """Names of the plugins implementing ``hook_name``, in pluggy's call order (last registered first)."""
        names: list[str] = []
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            if impl.plugin_name not in names:
                names.append(impl.plugin_name)
        return names

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any, BaseException | None]]:
        """Call a hook on every plugin separately (pluggy binds the arguments): one raising never hides the others'
        results. Returns ``(plugin, result, error)`` per plugin; a raising plugin also warns."""
        out: list[tuple[str, Any, BaseException | None]] = []
        for name in self.implementers(hook_name):
            try:
                out.append((name, self.call_plugin(name, hook_name, **kwargs), None))
            except Exception as exc:
                warnings.warn(f"sagellm-comm plugin {name!r} failed in {hook_name}: {exc}", stacklevel=2)
                out.append((name, None, exc))
        return out

    def call_first(self, hook_name: str, *, isolate: bool, **kwargs: Any) -> tuple[str, Any] | None:
        """``(plugin, answer)`` of the first plugin whose implementation returns non-None (a "first wins" hook,
        declared ``firstresult``), or None. ``isolate``: a raising plugin is skipped with a warning (True) or its
        error propagates (False: e.g. a collective must not fail silently)."""
        for name in self.implementers(hook_name):
            try:
                result = self.call_plugin(name, hook_name, **kwargs)
            except Exception as exc:
                if not isolate:
                    raise
                warnings.warn(f"sagellm-comm plugin {name!r} failed in {hook_name}: {exc}", stacklevel=2)
                continue
            if result is not None:
                return name, result
        return None

    @staticmethod
    def _record(ep: EntryPoint) -> PluginRecord:
        dist = getattr(ep, "dist", None)
        return PluginRecord(
            name=ep.name, distribution=getattr(dist, "name", "") or "", version=getattr(dist, "version", "") or ""
        )

    @staticmethod
    def _incompatible(rec: PluginRecord, problem: str) -> None:
        rec.status, rec.error = "incompatible", problem
        warnings.warn(
            f"sagellm-comm plugin {rec.name!r} ({rec.distribution or 'unknown distribution'}) is incompatible with "
            f"this core and is skipped: {problem}",
            RuntimeWarning,
            stacklevel=3,
        )

    @staticmethod
    def _fail(rec: PluginRecord, exc: BaseException, stage: str) -> None:
        rec.status = "failed"
        rec.error = f"{stage} failed: {type(exc).__name__}: {exc}"
        rec.traceback = traceback.format_exc()
        warnings.warn(
            f"sagellm-comm plugin {rec.name!r} ({rec.distribution or 'unknown distribution'}) failed to "
            f"load and is skipped: {rec.error}",
            RuntimeWarning,
            stacklevel=3,
        )
