"""Test-only plugin: ``faulty``, the Gloo backend with an all_reduce that adds 1 to every element afterwards.

Registered through a throw-away distribution on PYTHONPATH (see conftest.py), exactly as a real plugin is, so
the benchmark's rank processes load it too. Its send/recv are Gloo's own, so composite algorithms on it are right.
"""

from __future__ import annotations

from sagellm_comm.plugins import hookimpl
from sagellm_comm.registry import BackendRegistry, BackendSpec
from sagellm_comm_gloo import GlooBackend

# the plugin API this entry module is written for; the core skips it when it speaks another (docs/plugins.md)
SAGELLM_COMM_PLUGIN_API = "2.0"


class FaultyGlooBackend(GlooBackend):
    name = "faulty"

    def _all_reduce(self, tensor, op, group, async_op):
        if async_op:
            raise NotImplementedError("the faulty test backend only runs blocking all_reduce")
        super()._all_reduce(tensor, op, group, async_op)
        tensor.add_(1)


@hookimpl
def sagellm_comm_register_backends(registry: BackendRegistry) -> None:
    registry.register(
        BackendSpec(
            name="faulty",
            factory=FaultyGlooBackend,
            devices=frozenset({"cpu"}),
            priority=-1,
            description="test only: gloo whose all_reduce result is off by one",
        )
    )
