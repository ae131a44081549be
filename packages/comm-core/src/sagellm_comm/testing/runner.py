"""Parent-side helpers of the conformance suite: rank pools kept per world size, and the runner tests call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sagellm_comm.capabilities import Capabilities
from sagellm_comm.launch import RankPool

DEFAULT_TASK_TIMEOUT_S = 120.0


def local_device_count(device_type: str) -> int:
    """How many ``device_type`` devices this host has (torch's device module: cuda, npu, xpu, ...)."""
    import torch

    try:
        module = torch.get_device_module(device_type)
        return int(module.device_count()) if module.is_available() else 0
    except Exception:
        return 0


class PoolCache:
    """One live ``RankPool`` per world size for a whole test session; a pool torn down by a failure is replaced.
    ``env``: extra environment for the ranks (e.g. a composite backend's simulated node layout)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._pools: dict[int, RankPool] = {}
        self._env = env

    def get(self, world_size: int) -> RankPool:
        pool = self._pools.get(world_size)
        if pool is None or pool.broken:
            if pool is not None:
                pool.close()
            pool = RankPool(world_size, env=self._env)
            self._pools[world_size] = pool
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


class ConformanceRunner:
    """Runs conformance tasks for one backend on one world size."""

    def __init__(
        self, backend: str, world_size: int, capabilities: Capabilities, pools: PoolCache, device_type: str = "cpu"
    ) -> None:
        self.backend = backend
        self.world_size = world_size
        self.capabilities = capabilities
        self.device_type = device_type
        self._pools = pools

    def run(
        self, task: Callable[..., Any], *args: Any, timeout: float = DEFAULT_TASK_TIMEOUT_S, **kwargs: Any
    ) -> list[Any]:
        return self._pools.get(self.world_size).run(task, self.backend, *args, timeout=timeout, **kwargs)
