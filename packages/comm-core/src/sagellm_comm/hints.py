"""What to install: hints for backends and devices nothing installed here serves.

The core knows no plugin by name. It reads two things that exist anyway: the extras of the installed
``isagellm-comm`` meta-distribution (its metadata lists them), and torch.distributed's own map from device type to
its c10d backend (``cuda -> nccl``, ``xpu -> xccl``; torch_npu adds ``npu -> hccl``). A hint names an extra only when
that extra really exists in the installed release.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, metadata

__all__ = ["META_DISTRIBUTION", "hint_for_backend", "hint_for_device", "meta_extras"]

META_DISTRIBUTION = "isagellm-comm"
_NOT_EXTRAS = {"all", "plot"}  # extras of the meta-distribution that add no backend of their own


def meta_extras() -> tuple[str | None, list[str]]:
    """(version, extras) of the installed meta-distribution; (None, []) when it is not installed."""
    try:
        meta = metadata(META_DISTRIBUTION)
    except PackageNotFoundError:
        return None, []
    return meta["Version"], sorted(set(meta.get_all("Provides-Extra") or []))


def _extras_line(version: str | None, extras: list[str]) -> str:
    if version is None:
        return (
            f"{META_DISTRIBUTION} (the distribution whose extras pull the plugins) is not installed; "
            f"`pip install {META_DISTRIBUTION}` gives the CPU backends"
        )
    backends = [e for e in extras if e not in _NOT_EXTRAS]
    return f"the extras of {META_DISTRIBUTION} {version} are: {', '.join(backends) or 'none'}"


def hint_for_backend(name: str) -> str:
    """``pip install 'isagellm-comm[name]'`` when that extra exists, else what does exist."""
    version, extras = meta_extras()
    if name in extras:
        return f"install it with: pip install '{META_DISTRIBUTION}[{name}]'"
    return (
        f"no extra of {META_DISTRIBUTION} is named {name!r} ({_extras_line(version, extras)}); a third-party "
        "plugin providing it must be installed on its own"
    )


def hint_for_device(device_type: str) -> str:
    """Which extra serves ``device_type``, through torch.distributed's device -> backend map."""
    version, extras = meta_extras()
    try:
        import torch.distributed as dist

        engine = dist.Backend.default_device_backend_map.get(device_type)
    except Exception:  # torch without distributed support
        engine = None
    if engine and engine in extras:
        return f"install the plugin for {device_type} tensors: pip install '{META_DISTRIBUTION}[{engine}]'"
    via = f" (torch.distributed serves {device_type} with {engine!r})" if engine else ""
    if version is None:
        return f"{_extras_line(version, extras)}; its extras add the other devices{via}"
    return f"no extra of {META_DISTRIBUTION} serves {device_type!r} tensors yet{via}; {_extras_line(version, extras)}"
