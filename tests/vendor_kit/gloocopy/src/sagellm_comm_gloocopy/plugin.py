"""Entry point: registers every backend of this fixture by path (nothing heavy imported)."""

from __future__ import annotations

from sagellm_comm.plugins import hookimpl
from sagellm_comm.registry import BackendRegistry, BackendSpec

# the plugin API this entry module is written for; the core skips it when it speaks another (docs/plugins.md)
SAGELLM_COMM_PLUGIN_API = "2.0"

BACKENDS = {
    "gloocopy": "GlooCopy",
    "gloocopy-offbyone": "OffByOne",
    "gloocopy-wrongroot": "WrongRoot",
    "gloocopy-deferred": "DeferredAsync",
    "gloocopy-blocking": "BlockingAsync",
}


@hookimpl
def sagellm_comm_register_backends(registry: BackendRegistry) -> None:
    for name, cls in BACKENDS.items():
        registry.register(
            BackendSpec(
                name=name,
                factory=f"sagellm_comm_gloocopy.backends:{cls}",
                devices=frozenset({"cpu"}),
                priority=-10,
                install_hint="pip install sagellm-comm-gloocopy",
                description="out-of-tree test fixture",
            )
        )
