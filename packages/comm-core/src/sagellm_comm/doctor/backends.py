"""Installed backends: which plugins loaded, which backends can run here (through the public registry API only;
the core knows no plugin by name)."""

from __future__ import annotations

import warnings

from sagellm_comm.doctor.findings import FAIL, INFO, OK, WARN, Context, Finding

__all__ = ["check_backends"]

CHECK_BACKENDS = "backends"
INSTALL = "pip install 'isagellm-comm[gloo]' (CPU), 'isagellm-comm[nccl]' (NVIDIA GPUs), ..."


def check_backends(ctx: Context) -> list[Finding]:
    from sagellm_comm.registry import list_comm_backends, plugin_manager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # failed plugins become findings, not warnings
        records = list(plugin_manager().records.values())
        backends = list_comm_backends()
    out: list[Finding] = []
    for r in records:
        if r.status == "failed":
            dist = r.distribution or r.name
            out.append(
                Finding(
                    CHECK_BACKENDS,
                    WARN,
                    f"plugin {r.name!r} ({dist}) failed to load: {r.error}",
                    f"pip install --force-reinstall '{dist}', or skip it: export SAGELLM_COMM_DISABLE_PLUGINS={r.name}",
                )
            )
        elif r.status == "disabled":
            out.append(Finding(CHECK_BACKENDS, INFO, f"plugin {r.name!r} is disabled: {r.error}"))
    available = [b for b in backends if b.available]
    for b in backends:
        if not b.available:
            out.append(
                Finding(
                    CHECK_BACKENDS,
                    INFO,
                    f"backend {b.name} ({', '.join(b.devices)}; plugin {b.plugin}) cannot run here: {b.reason}",
                )
            )
    if available:
        shown = ", ".join(f"{b.name} ({', '.join(b.devices)})" for b in available)
        out.insert(0, Finding(CHECK_BACKENDS, OK, f"available backends: {shown}"))
    else:
        why = "no backend is registered" if not backends else "no registered backend can run here"
        out.insert(0, Finding(CHECK_BACKENDS, FAIL, f"{why}: init_process_group has nothing to run on", INSTALL))
    return out
