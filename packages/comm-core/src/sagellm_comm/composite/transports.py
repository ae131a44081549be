"""Which installed backends the composite runs on, chosen from the registry by declared scope and priority.

- inter (between hosts): the highest-priority available backend for the device whose scope is ``cluster`` and
  that has collectives (a transfer-only backend such as rdma is never chosen);
- intra (inside a host): the highest-priority available non-composite backend for the device, any scope (shm
  beats gloo on one host; where the best is the inter one itself, both levels run on it, on its sub-groups).
"""

from __future__ import annotations

from dataclasses import dataclass

from sagellm_comm.errors import BackendNotSupportedError
from sagellm_comm.registry import BackendSpec, backend_registry
from sagellm_comm.rendezvous import launcher_layout

__all__ = ["Transports", "choose_transports", "spans_hosts", "transports_available"]

NEEDED = frozenset({"all_reduce", "send", "recv"})


@dataclass(frozen=True)
class Transports:
    intra: BackendSpec
    inter: BackendSpec

    def describe(self) -> str:
        return f"inside a node {self.intra.name}, between nodes {self.inter.name}"


def _usable(spec: BackendSpec, device_type: str) -> tuple[bool, str]:
    if spec.scope == "composite" or device_type not in spec.devices:
        return False, "not a transport for this device"
    ok, why = spec.check()
    if not ok:
        return False, why
    cls = spec.load()
    caps = getattr(cls, "capabilities", None)
    if caps is None or not caps.ops >= NEEDED:
        return False, f"does not declare {', '.join(sorted(NEEDED))}"
    return True, "ok"


def choose_transports(device_type: str = "cpu") -> Transports:
    """The intra- and inter-node backends for ``device_type``; BackendNotSupportedError says what is missing."""
    ranked = sorted(backend_registry().specs(), key=lambda s: (-s.priority, s.name))
    intra = inter = None
    skipped = []
    for spec in ranked:
        if spec.scope == "composite" or device_type not in spec.devices:
            continue
        ok, why = _usable(spec, device_type)
        if not ok:
            skipped.append(f"{spec.name}: {why}")
            continue
        intra = intra or spec
        if inter is None and spec.scope == "cluster":
            inter = spec
    if intra is None or inter is None:
        raise BackendNotSupportedError(
            f"the hier backend needs a {device_type} backend that spans hosts (e.g. gloo: pip install "
            f"'isagellm-comm[gloo]'); usable here: {intra.name if intra else 'none'}"
            + (f"; skipped: {'; '.join(skipped)}" if skipped else "")
        )
    return Transports(intra=intra, inter=inter)


def transports_available() -> tuple[bool, str]:
    """``available`` probe: a cross-host backend is installed and available (without importing it)."""
    for spec in backend_registry().specs():
        # priority 0 means "never chosen automatically" (e.g. a transfer-only backend)
        if spec.scope == "cluster" and "cpu" in spec.devices and spec.priority > 0 and spec.check()[0]:
            return True, f"cross-host transport: {spec.name}"
    return False, "no available CPU backend spans hosts (install isagellm-comm-gloo)"


def spans_hosts() -> tuple[bool, str]:
    """``auto_when`` probe: the launcher says the ranks are on several hosts (torchrun and the project's launcher
    set WORLD_SIZE and LOCAL_WORLD_SIZE)."""
    layout = launcher_layout()
    if layout is None:
        return False, "the launcher did not say the ranks span hosts (WORLD_SIZE/LOCAL_WORLD_SIZE not both set)"
    ws, local = layout
    if ws != local:
        return True, f"the ranks span several hosts (WORLD_SIZE={ws}, LOCAL_WORLD_SIZE={local})"
    return False, f"all ranks on one host (WORLD_SIZE = LOCAL_WORLD_SIZE = {ws})"
