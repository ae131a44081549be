"""Memory ordering of the Python engine's flags: what makes "data stored, then flag stored" visible in that order.

x86-64 keeps stores in order and loads in order (total store order), so plain stores and loads suffice there and the
fences below are no-ops. Elsewhere (aarch64: Kunpeng hosts beside Ascend NPUs) a flag store needs a release fence
before it and a flag load an acquire fence after it; Python cannot issue one, so they come from the native library.
Without it the Python engine cannot run on such a CPU (``supported`` says why). The native engine orders its own
flags with acquire/release atomics and needs none of this.
"""

from __future__ import annotations

import platform
from collections.abc import Callable

from sagellm_comm_cxl_ub import native

__all__ = ["TSO", "TSO_MACHINES", "acquire_fence", "release_fence", "supported"]

TSO_MACHINES = ("x86_64", "amd64")
TSO = platform.machine().lower() in TSO_MACHINES


def _nothing() -> None:
    return None


def _fences() -> tuple[Callable[[], None], Callable[[], None]]:
    if TSO or native.lib is None:
        return _nothing, _nothing
    return native.lib.sg_fence_release, native.lib.sg_fence_acquire


release_fence, acquire_fence = _fences()


def supported() -> tuple[bool, str]:
    """Whether the engine's flag protocol is correct on this CPU, and why."""
    machine = platform.machine().lower()
    if native.lib is not None:
        return True, f"acquire/release atomics of the native library ({machine})"
    if machine in TSO_MACHINES:
        return True, "x86-64 total store order"
    return False, (
        f"on {machine} the engine's flags need memory fences, which come from the native library, and "
        f"it is not available: {native.NATIVE_REASON}"
    )
