"""Backend registry: every backend plugins register, their availability, and selection.

``get_comm_backend(name)`` returns a new, uninitialized backend; ``"auto"``/None picks the available backend with
the highest priority for the device (CUDA when torch sees one, else CPU, unless ``device=`` says otherwise).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sagellm_comm.backend import CommBackend, active_backends
from sagellm_comm.errors import BackendNotSupportedError, InvalidArgumentError
from sagellm_comm.plugins.manager import PluginRecord, SagellmPluginManager

__all__ = [
    "BackendRegistry",
    "BackendSpec",
    "BackendStatus",
    "current_backend",
    "get_comm_backend",
    "is_comm_backend_available",
    "list_comm_backends",
    "plugin_manager",
    "register_comm_backend",
    "reload_plugins",
]

AUTO_NAMES = frozenset({"auto", ""})


@dataclass(frozen=True)
class BackendSpec:
    """How to make a backend, and whether it can run here.

    ``available`` returns ``(ok, reason)``; the reason says why not (e.g. "torch has no CUDA"). ``priority`` orders
    auto selection among available backends for the same device (higher wins).
    """

    name: str
    factory: Callable[..., CommBackend]
    devices: frozenset[str] = frozenset({"cpu"})
    priority: int = 0
    available: Callable[[], tuple[bool, str]] | None = None
    description: str = ""
    plugin: str = "in-process"

    def check(self) -> tuple[bool, str]:
        if self.available is None:
            return True, "ok"
        try:
            ok, reason = self.available()
        except Exception as exc:  # an availability probe must never break listing
            return False, f"availability check raised {type(exc).__name__}: {exc}"
        return bool(ok), reason or ("ok" if ok else "unavailable")


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str
    devices: tuple[str, ...] = ()
    priority: int = 0
    plugin: str = ""
    description: str = ""
    capabilities: dict[str, Any] = field(default_factory=dict)


class BackendRegistry:
    """Name -> BackendSpec. Plugins receive it in ``sagellm_comm_register_backends``."""

    def __init__(self) -> None:
        self._specs: dict[str, BackendSpec] = {}
        self._plugin: str = "in-process"
        self._lock = threading.RLock()

    def register(self, spec: BackendSpec | str, factory: Callable[..., CommBackend] | None = None,
                 **fields: Any) -> BackendSpec:
        """``register(BackendSpec(...))`` or ``register("name", factory, devices=..., priority=...)``."""
        if isinstance(spec, str):
            if factory is None:
                raise InvalidArgumentError(f"register({spec!r}) needs a factory")
            spec = BackendSpec(name=spec, factory=factory, **fields)
        if not spec.name or spec.name in AUTO_NAMES or spec.name != spec.name.strip().lower():
            raise InvalidArgumentError(f"backend name {spec.name!r} must be a non-empty lower-case name, not 'auto'")
        if spec.plugin == "in-process" and self._plugin != "in-process":
            spec = BackendSpec(**{**spec.__dict__, "plugin": self._plugin})
        spec = BackendSpec(**{**spec.__dict__, "devices": frozenset(spec.devices)})
        with self._lock:
            self._specs[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        with self._lock:
            self._specs.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def get(self, name: str) -> BackendSpec | None:
        return self._specs.get(name)

    def specs(self) -> list[BackendSpec]:
        return [self._specs[n] for n in sorted(self._specs)]

    def registering_as(self, plugin: str) -> _Scope:
        return _Scope(self, plugin)


class _Scope:
    """Stamps the registering plugin's name on specs and reports which names it registered."""

    def __init__(self, registry: BackendRegistry, plugin: str) -> None:
        self.registry, self.plugin, self.names = registry, plugin, []

    def __enter__(self) -> _Scope:
        self._before = set(self.registry.names())
        self.registry._plugin = self.plugin
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        self.registry._plugin = "in-process"
        added = [n for n in self.registry.names() if n not in self._before]
        if exc_type is not None:  # a failing plugin leaves nothing half-registered
            for n in added:
                self.registry.unregister(n)
        self.names = added


_state_lock = threading.RLock()
_registry: BackendRegistry | None = None
_manager: SagellmPluginManager | None = None


def _register_plugin(registry: BackendRegistry, manager: SagellmPluginManager) -> Callable[[str, Any], list[str]]:
    def on_loaded(name: str, plugin: Any) -> list[str]:
        with registry.registering_as(name) as scope:
            for fn in manager.impls_of(plugin, "sagellm_comm_register_backends"):
                fn(registry=registry)
        return scope.names

    return on_loaded


def _ensure_loaded() -> tuple[BackendRegistry, SagellmPluginManager]:
    global _registry, _manager
    reg, man = _registry, _manager
    if reg is not None and man is not None:
        return reg, man
    with _state_lock:
        if _registry is None or _manager is None:
            reg, man = BackendRegistry(), SagellmPluginManager()
            man.load_entry_points(_register_plugin(reg, man))
            _registry, _manager = reg, man
        return _registry, _manager


def plugin_manager() -> SagellmPluginManager:
    return _ensure_loaded()[1]


def backend_registry() -> BackendRegistry:
    return _ensure_loaded()[0]


def reload_plugins() -> None:
    """Forget loaded plugins and in-process registrations; the next call loads entry points again."""
    global _registry, _manager
    with _state_lock:
        _registry, _manager = None, None


def register_plugin(plugin: Any, name: str) -> PluginRecord:
    """Register an in-process pluggy plugin object (same isolation as entry-point plugins)."""
    reg, man = _ensure_loaded()
    return man.register_object(plugin, name, _register_plugin(reg, man))


def register_comm_backend(name: str, factory: Callable[..., CommBackend], *, devices: Iterable[str] = ("cpu",),
                          priority: int = 0, available: Callable[[], tuple[bool, str]] | None = None,
                          description: str = "") -> BackendSpec:
    """Register a backend from this process (no entry point needed); replaces one of the same name."""
    return backend_registry().register(BackendSpec(name=name, factory=factory, devices=frozenset(devices),
                                                   priority=priority, available=available,
                                                   description=description))


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _status(spec: BackendSpec) -> BackendStatus:
    ok, reason = spec.check()
    caps: dict[str, Any] = {}
    cls = spec.factory if isinstance(spec.factory, type) else None
    if cls is not None and hasattr(cls, "capabilities"):
        caps = cls.capabilities.describe()
    return BackendStatus(name=spec.name, available=ok, reason=reason, devices=tuple(sorted(spec.devices)),
                         priority=spec.priority, plugin=spec.plugin, description=spec.description,
                         capabilities=caps)


def list_comm_backends() -> list[BackendStatus]:
    """Every known backend with its availability and reason, plus plugins that failed to load."""
    reg, man = _ensure_loaded()
    out = [_status(s) for s in reg.specs()]
    for rec in man.records.values():
        if rec.status == "failed":
            out.append(BackendStatus(name=rec.name, available=False, plugin=rec.name,
                                     reason=f"plugin {rec.name!r} ({rec.distribution or '?'}) failed to load: "
                                            f"{rec.error}"))
    return out


def is_comm_backend_available(name: str) -> bool:
    spec = backend_registry().get(name)
    return spec is not None and spec.check()[0]


def select_backend_name(device: str | None = None) -> str:
    """The name ``auto`` resolves to for ``device`` (default: cuda if torch sees a GPU, else cpu)."""
    dev = device or _default_device()
    dev_type = dev.split(":", 1)[0]
    reg = backend_registry()
    candidates = [s for s in reg.specs() if dev_type in s.devices]
    ranked = sorted(candidates, key=lambda s: (-s.priority, s.name))
    reasons = []
    for spec in ranked:
        ok, reason = spec.check()
        if ok:
            return spec.name
        reasons.append(f"{spec.name}: {reason}")
    known = ", ".join(reg.names()) or "none (install a plugin, e.g. pip install 'isagellm-comm[gloo]')"
    raise BackendNotSupportedError(
        f"no available backend for device {dev_type!r}" + (f" ({'; '.join(reasons)})" if reasons else "")
        + f"; known backends: {known}")


def get_comm_backend(name: str | None = None, *, device: str | None = None, **options: Any) -> CommBackend:
    """A new, uninitialized backend by name (``"gloo"``, ...) or ``"auto"``/None for the best available one."""
    if name is not None and not isinstance(name, str):
        raise InvalidArgumentError(f"backend name must be a string, got {type(name).__name__}")
    key = (name or "auto").strip().lower()
    if key in AUTO_NAMES:
        key = select_backend_name(device)
    reg, man = _ensure_loaded()
    spec = reg.get(key)
    if spec is None:
        failed = {r.name: r.error for r in man.records.values() if r.status == "failed"}
        hint = f"; plugin {key!r} failed to load: {failed[key]}" if key in failed else ""
        raise BackendNotSupportedError(
            f"unknown comm backend {name!r}; known backends: {', '.join(reg.names()) or 'none'}{hint}. "
            f"Install the plugin (pip install 'isagellm-comm[{key}]') or check `sagellm-comm info`.")
    ok, reason = spec.check()
    if not ok:
        raise BackendNotSupportedError(f"comm backend {key!r} is installed but unavailable here: {reason}")
    return spec.factory(**options)


def current_backend(name: str | None = None) -> CommBackend | None:
    """The backend of that name already initialized in this process (any, for None/auto), if one is."""
    active = active_backends()
    if name is None or name.strip().lower() in AUTO_NAMES:
        return next(iter(active.values()), None)
    return active.get(name.strip().lower())
