"""Backend registry: every backend plugins register, their availability, and selection.

``get_comm_backend(name)`` returns a new, uninitialized backend; ``"auto"``/None picks the available backend with
the highest priority for the device the caller names (``device="cuda:0"`` or a tensor's ``.device``; CPU when none
is named).

Registration is lazy (fsspec's registry is the model): a ``BackendSpec`` may name its factory and its availability
probe as ``"module:attr"`` strings, imported only when a backend is created or probed, so listing backends never
imports an engine, and a plugin whose engine needs a missing library fails at creation with its own install hint.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sagellm_comm.backend import CommBackend, active_backends
from sagellm_comm.errors import BackendNotSupportedError, InvalidArgumentError
from sagellm_comm.hints import hint_for_backend, hint_for_device
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
    "resolve_object",
    "select_backend",
    "select_backend_name",
]

AUTO_NAMES = frozenset({"auto", ""})
SCOPES = frozenset({"cluster", "host", "composite"})
DEFAULT_DEVICE = "cpu"


def resolve_object(path: str) -> Any:
    """Import ``"package.module:attr"`` (``attr`` may be dotted)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise InvalidArgumentError(f"{path!r} is not a 'module:attribute' path")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class BackendSpec:
    """How to make a backend, and whether it can run here.

    ``factory`` is the backend class (or any callable returning a ``CommBackend``), or its ``"module:Class"`` path,
    imported on first use. ``available`` (a callable or a ``"module:function"`` path) returns ``(ok, reason)``; the
    reason says why not ("torch has no CUDA"); it must be cheap and must not import the engine. ``priority`` orders
    auto selection among available backends for the same device (higher wins). ``install_hint`` is what to tell a
    user when the factory cannot be imported (e.g. ``"pip install 'isagellm-comm[rdma]'"``).
    """

    name: str
    factory: Callable[..., CommBackend] | str
    devices: frozenset[str] = frozenset({"cpu"})
    priority: int = 0
    available: Callable[[], tuple[bool, str]] | str | None = None
    description: str = ""
    plugin: str = "in-process"
    install_hint: str = ""
    # where its groups may live: "cluster" (ranks on any hosts), "host" (ranks of one host only, e.g. shared
    # memory), "composite" (built from other backends; never a transport of another composite)
    scope: str = "cluster"
    # ``auto`` picks it only when this returns (True, reason) (a callable or "module:function", cheap, importing no
    # engine): e.g. "the ranks are on one host" from the launcher's environment. An explicit name ignores it.
    auto_when: Callable[[], tuple[bool, str]] | str | None = None

    def load(self) -> Callable[..., CommBackend]:
        """The factory, importing it if it was given as a path; a failed import becomes
        ``COMM_BACKEND_NOT_SUPPORTED`` with the install hint."""
        if not isinstance(self.factory, str):
            return self.factory
        try:
            return resolve_object(self.factory)
        except Exception as exc:
            hint = self.install_hint or hint_for_backend(self.name)
            raise BackendNotSupportedError(
                f"backend {self.name!r} (plugin {self.plugin!r}) could not be loaded from {self.factory}: "
                f"{type(exc).__name__}: {exc}. {hint}"
            ) from exc

    def loaded_class(self) -> type | None:
        """The factory class if it is already imported (never imports anything)."""
        if isinstance(self.factory, type):
            return self.factory
        if isinstance(self.factory, str):
            module_name, _, attr = self.factory.partition(":")
            module = sys.modules.get(module_name)
            obj = getattr(module, attr, None) if module is not None and "." not in attr else None
            return obj if isinstance(obj, type) else None
        return None

    def check(self) -> tuple[bool, str]:
        """Whether it can run here, and why not."""
        return _probe(self.available, "availability check")

    def auto_check(self) -> tuple[bool, str]:
        """Whether ``auto`` should pick it for this job (its ``auto_when``), and why (not)."""
        return _probe(self.auto_when, "auto_when check")


def _probe(probe: Callable[[], tuple[bool, str]] | str | None, what: str) -> tuple[bool, str]:
    if probe is None:
        return True, "ok"
    try:
        fn = resolve_object(probe) if isinstance(probe, str) else probe
        ok, reason = fn()
    except Exception as exc:  # a probe must never break listing or selection
        return False, f"{what} raised {type(exc).__name__}: {exc}"
    return bool(ok), reason or ("ok" if ok else "unavailable")


@dataclass(frozen=True)
class BackendStatus:
    """One row of ``list_comm_backends()``: a backend (or a plugin that registered none), whether it can run
    here and why, its devices, priority, plugin, description and declared capabilities."""

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

    def register(
        self, spec: BackendSpec | str, factory: Callable[..., CommBackend] | None = None, **fields: Any
    ) -> BackendSpec:
        """``register(BackendSpec(...))`` or ``register("name", factory, devices=..., priority=...)``."""
        if isinstance(spec, str):
            if factory is None:
                raise InvalidArgumentError(f"register({spec!r}) needs a factory")
            spec = BackendSpec(name=spec, factory=factory, **fields)
        if not spec.name or spec.name in AUTO_NAMES or spec.name != spec.name.strip().lower():
            raise InvalidArgumentError(f"backend name {spec.name!r} must be a non-empty lower-case name, not 'auto'")
        if spec.scope not in SCOPES:
            raise InvalidArgumentError(f"backend {spec.name!r}: scope {spec.scope!r} is not one of {sorted(SCOPES)}")
        if not isinstance(spec.factory, str) and not callable(spec.factory):
            raise InvalidArgumentError(f"backend {spec.name!r}: factory must be callable or a 'module:Class' path")
        if spec.plugin == "in-process" and self._plugin != "in-process":
            spec = replace(spec, plugin=self._plugin)
        spec = replace(spec, devices=frozenset(spec.devices))
        with self._lock:
            self._specs[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        """Forget backend ``name`` (nothing happens if it is not registered)."""
        with self._lock:
            self._specs.pop(name, None)

    def names(self) -> list[str]:
        """The registered backend names, sorted."""
        return sorted(self._specs)

    def get(self, name: str) -> BackendSpec | None:
        """The spec registered as ``name``, or None."""
        return self._specs.get(name)

    def specs(self) -> list[BackendSpec]:
        """Every registered spec, sorted by name."""
        return [self._specs[n] for n in sorted(self._specs)]

    def registering_as(self, plugin: str) -> _Scope:
        """A context manager: while it is open, ``register`` records ``plugin`` as each spec's plugin and the
        scope it yields lists the names registered (how the plugin manager attributes backends to plugins)."""
        return _Scope(self, plugin)


class _Scope:
    """Stamps the registering plugin's name on specs and reports which names it registered."""

    def __init__(self, registry: BackendRegistry, plugin: str) -> None:
        self.registry, self.plugin = registry, plugin
        self.names: list[str] = []

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
            manager.call_plugin(name, "sagellm_comm_register_backends", registry=registry)
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
    """The process's plugin manager, loading the installed plugins on first use."""
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


def register_comm_backend(
    name: str,
    factory: Callable[..., CommBackend] | str,
    *,
    devices: Iterable[str] = ("cpu",),
    priority: int = 0,
    available: Callable[[], tuple[bool, str]] | str | None = None,
    description: str = "",
    install_hint: str = "",
) -> BackendSpec:
    """Register a backend from this process (no entry point needed); replaces one of the same name."""
    return backend_registry().register(
        BackendSpec(
            name=name,
            factory=factory,
            devices=frozenset(devices),
            priority=priority,
            available=available,
            description=description,
            install_hint=install_hint,
        )
    )


def _device_type(device: Any) -> str:
    """``"cuda"`` from ``"cuda:1"``, ``torch.device("cuda", 1)`` or a tensor; CPU when nothing is named."""
    if device is None:
        return DEFAULT_DEVICE
    dev = getattr(device, "device", device)  # a tensor names its device
    text = getattr(dev, "type", None) or str(dev)
    return text.split(":", 1)[0].strip().lower() or DEFAULT_DEVICE


def _status(spec: BackendSpec) -> BackendStatus:
    ok, reason = spec.check()
    caps: dict[str, Any] = {}
    cls = spec.loaded_class()  # capabilities only of factories already imported: listing imports no engine
    if cls is not None and hasattr(cls, "capabilities"):
        caps = cls.capabilities.describe()
    return BackendStatus(
        name=spec.name,
        available=ok,
        reason=reason,
        devices=tuple(sorted(spec.devices)),
        priority=spec.priority,
        plugin=spec.plugin,
        description=spec.description,
        capabilities=caps,
    )


def list_comm_backends() -> list[BackendStatus]:
    """Every known backend with its availability and reason, plus plugins that failed to load or were skipped as
    incompatible with this core's plugin API."""
    reg, man = _ensure_loaded()
    out = [_status(s) for s in reg.specs()]
    for rec in man.records.values():
        if rec.status in _NOT_LOADED:
            out.append(
                BackendStatus(
                    name=rec.name,
                    available=False,
                    plugin=rec.name,
                    reason=f"plugin {rec.name!r} ({rec.distribution or '?'}) {_NOT_LOADED[rec.status]}: {rec.error}",
                )
            )
    return out


# plugin record statuses whose plugin registered nothing, as list_comm_backends() words them
_NOT_LOADED = {"failed": "failed to load", "incompatible": "is incompatible with this core"}


def is_comm_backend_available(name: object) -> bool:  # anything: only a backend's name can be True
    """Whether ``get_comm_backend(name)`` would return a backend (names are read the same way: case and
    surrounding spaces do not matter, ``"auto"`` asks whether any backend is available for CPU tensors)."""
    if not isinstance(name, str):
        return False
    key = name.strip().lower()
    if key in AUTO_NAMES:
        try:
            select_backend_name()
        except BackendNotSupportedError:
            return False
        return True
    spec = backend_registry().get(key)
    return spec is not None and spec.check()[0]


def select_backend_name(device: Any = None) -> str:
    """The name ``auto`` resolves to for ``device`` (a device string, ``torch.device`` or tensor; default CPU)."""
    return select_backend(device)[0]


def select_backend(device: Any = None) -> tuple[str, str]:
    """(name, reason): the available backend with the highest priority for ``device`` whose ``auto_when`` holds,
    and a sentence saying why it won over the ones above it."""
    dev_type = _device_type(device)
    reg = backend_registry()
    candidates = [s for s in reg.specs() if dev_type in s.devices]
    ranked = sorted(candidates, key=lambda s: (-s.priority, s.name))
    reasons: list[str] = []
    for spec in ranked:
        ok, reason = spec.check()
        if ok:
            ok, reason = spec.auto_check()
            if ok:
                passed = f" (passed over: {'; '.join(reasons)})" if reasons else ""
                why = "" if reason == "ok" else f": {reason}"
                return spec.name, f"{spec.name}: the highest-priority backend for {dev_type} tensors{why}{passed}"
            reasons.append(f"{spec.name}: not for this job, {reason}")
            continue
        reasons.append(f"{spec.name}: {reason}")
    known = ", ".join(f"{s.name} ({'/'.join(sorted(s.devices))})" for s in reg.specs()) or "none"
    if reasons and any(s.scope != "composite" for s in candidates):  # a composite alone has nothing to compose
        raise BackendNotSupportedError(
            f"no available backend for {dev_type!r} tensors: {'; '.join(reasons)}; known backends: {known}"
        )
    raise BackendNotSupportedError(
        f"no installed backend handles {dev_type!r} tensors (known backends: {known}); {hint_for_device(dev_type)}"
    )


def get_comm_backend(name: str | None = None, *, device: Any = None, **options: Any) -> CommBackend:
    """A new, uninitialized backend by name (``"gloo"``, ...) or ``"auto"``/None for the best available one for
    ``device`` (the device of the tensors you will pass; CPU when not given)."""
    if name is not None and not isinstance(name, str):
        raise InvalidArgumentError(f"backend name must be a string, got {type(name).__name__}")
    key = (name or "auto").strip().lower()
    because = ""
    if key in AUTO_NAMES:
        key, because = select_backend(device)
    reg, man = _ensure_loaded()
    spec = reg.get(key)
    if spec is None:
        skipped = {r.name: r for r in man.records.values() if r.status in _NOT_LOADED}
        rec = skipped.get(key)
        why = f"plugin {key!r} {_NOT_LOADED[rec.status]}: {rec.error}; " if rec is not None else ""
        if rec is None:  # a plugin named otherwise may provide it (cxl-ub provides shm): say which were not loaded
            unloaded = [r for r in man.records.values() if r.status != "loaded"]
            if unloaded:
                by_reason: dict[str, list[str]] = {}
                for r in unloaded:
                    by_reason.setdefault(f"{r.status}: {r.error}", []).append(repr(r.name))
                listed = "; ".join(f"{', '.join(names)} ({reason})" for reason, names in by_reason.items())
                why = f"plugins installed but not loaded here, one of which may provide it: {listed}. "
        raise BackendNotSupportedError(
            f"unknown comm backend {name!r}; known backends: {', '.join(reg.names()) or 'none'}. {why}"
            f"{hint_for_backend(key)}; `sagellm-comm info` shows what is installed."
        )
    ok, reason = spec.check()
    if not ok:
        raise BackendNotSupportedError(f"comm backend {key!r} is installed but unavailable here: {reason}")
    backend = spec.load()(**options)
    if because:
        backend.selected_because = because  # ``auto``: why this backend (sagellm-comm info, logs)
    return backend


def current_backend(name: str | None = None) -> CommBackend | None:
    """The backend of that name already initialized in this process (any, for None/auto), if one is."""
    if name is not None and not isinstance(name, str):
        raise InvalidArgumentError(f"backend name must be a string, got {type(name).__name__}")
    active = active_backends()
    if name is None or name.strip().lower() in AUTO_NAMES:
        return next(iter(active.values()), None)
    return active.get(name.strip().lower())
