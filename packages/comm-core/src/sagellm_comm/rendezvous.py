"""Where a process group meets: rank, world size and master address, from arguments or the torchrun environment.

``store`` is filled in by ``CommBackend.init_process_group``: the backend's namespaced side channel
(``sagellm_comm.store``), the way c10d hands a store to a backend factory.

Arguments win over the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, as torchrun sets
them). With neither, the process is a world of one. The timeout comes from the argument, else
``SAGELLM_COMM_TIMEOUT_S``, else ``DEFAULT_TIMEOUT_S``.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from sagellm_comm.errors import InvalidArgumentError, RankMismatchError

__all__ = [
    "DEFAULT_MASTER_ADDR",
    "DEFAULT_MASTER_PORT",
    "DEFAULT_TIMEOUT_S",
    "MAX_TIMEOUT_S",
    "Rendezvous",
    "check_timeout",
    "launcher_layout",
    "resolve_rendezvous",
]

DEFAULT_MASTER_ADDR = "127.0.0.1"
"""MASTER_ADDR when neither the argument nor the environment gives one."""
DEFAULT_MASTER_PORT = 29500  # torch.distributed's default
"""MASTER_PORT when neither the argument nor the environment gives one (torch.distributed's default)."""
DEFAULT_TIMEOUT_S = 120.0
"""Seconds the rendezvous and every later blocking call wait without ``timeout`` or ``SAGELLM_COMM_TIMEOUT_S``."""
# the longest wait handed to torch: it takes timeouts as ``timedelta`` and some engines overflow far below
# ``timedelta.max`` (gloo's barrier returns a false timeout at once past ~8e13 s); ``inf`` and larger mean this
MAX_TIMEOUT_S = 10 * 365 * 86400.0
"""The longest timeout handed to an engine (ten years); longer ones and ``inf`` are clamped to it."""


def check_timeout(what: str, value: Any) -> float:
    """``value`` as seconds: a real number > 0 (``inf`` and anything above ``MAX_TIMEOUT_S`` mean
    ``MAX_TIMEOUT_S``); anything else raises ``INVALID_ARGUMENT`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(f"{what} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond float range
        seconds = math.inf
    if math.isnan(seconds) or not seconds > 0:
        raise InvalidArgumentError(f"{what} must be > 0 seconds, got {value!r}")
    return min(seconds, MAX_TIMEOUT_S)


@dataclass(frozen=True)
class Rendezvous:
    """Where and how one process joins a group: its rank, the world size, its local rank, the master address and
    port (or ``init_method``), the timeout in seconds, and ``store``, the backend's side channel, filled in by
    ``CommBackend.init_process_group`` before the engine's ``_init`` sees it. ``url`` is the address as
    ``tcp://host:port`` (or ``init_method``)."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    timeout_s: float
    init_method: str | None = None
    # the backend's side channel (a ``sagellm_comm.store.SideChannel``), set by the core before ``_init``
    store: Any = field(default=None, compare=False, repr=False)

    @property
    def url(self) -> str:
        return self.init_method or f"tcp://{self.master_addr}:{self.master_port}"


def launcher_layout(env: Any = None) -> tuple[int, int] | None:
    """(WORLD_SIZE, LOCAL_WORLD_SIZE) as the launcher set them (torchrun, the project's launcher), or None when it
    did not set both as positive integers. Ranks span several hosts when the two differ. Cheap: for probes that
    run before the ranks meet."""
    env = os.environ if env is None else env
    ws, local = env.get("WORLD_SIZE", ""), env.get("LOCAL_WORLD_SIZE", "")
    if not (ws.isdigit() and local.isdigit() and int(ws) >= 1 and int(local) >= 1):
        return None
    return int(ws), int(local)


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgumentError(f"environment variable {name}={raw!r} is not an integer") from None


def _as_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an int, got {value!r}")
    return value


def resolve_rendezvous(
    world_size: int | None = None,
    rank: int | None = None,
    master_addr: str | None = None,
    master_port: int | None = None,
    timeout: float | None = None,
    init_method: str | None = None,
) -> Rendezvous:
    """Validate and complete the rendezvous parameters; raise a protocol-coded error on bad input."""
    ws = world_size if world_size is not None else _env_int("WORLD_SIZE")
    rk = rank if rank is not None else _env_int("RANK")
    ws = 1 if ws is None else _as_int("world_size", ws)
    if ws < 1:
        raise InvalidArgumentError(f"world_size must be >= 1, got {ws}")
    if rk is None:
        if ws != 1:
            raise RankMismatchError(
                f"world_size={ws} but no rank given: pass rank=... or set RANK (torchrun sets it for you)"
            )
        rk = 0
    rk = _as_int("rank", rk)
    if not 0 <= rk < ws:
        raise RankMismatchError(f"rank {rk} is out of range for world_size {ws} (valid ranks 0..{ws - 1})")
    local = _env_int("LOCAL_RANK")
    if master_addr is not None and not isinstance(master_addr, str):
        raise InvalidArgumentError(f"master_addr must be a host name or address string, got {master_addr!r}")
    if init_method is not None:
        _check_init_method(init_method)
    addr = master_addr or os.environ.get("MASTER_ADDR") or DEFAULT_MASTER_ADDR
    port = master_port if master_port is not None else _env_int("MASTER_PORT")
    port = DEFAULT_MASTER_PORT if port is None else _as_int("master_port", port)
    if not 0 < port < 65536:
        raise InvalidArgumentError(f"master_port must be in 1..65535, got {port}")
    if timeout is None:
        env_t = os.environ.get("SAGELLM_COMM_TIMEOUT_S")
        try:
            env_s = float(env_t) if env_t else None
        except ValueError:
            raise InvalidArgumentError(f"SAGELLM_COMM_TIMEOUT_S={env_t!r} is not a number of seconds") from None
        timeout_s = DEFAULT_TIMEOUT_S if env_s is None else check_timeout("SAGELLM_COMM_TIMEOUT_S", env_s)
    else:
        timeout_s = check_timeout("timeout", timeout)
    return Rendezvous(
        rank=rk,
        world_size=ws,
        local_rank=rk if local is None else local,
        master_addr=addr,
        master_port=port,
        timeout_s=timeout_s,
        init_method=init_method,
    )


def _check_init_method(url: Any) -> None:
    """A string; for ``file://`` its directory must exist (torch's FileStore would otherwise retry for 5 minutes
    while holding the GIL, whatever the timeout)."""
    if not isinstance(url, str):
        raise InvalidArgumentError(
            f"init_method must be a URL string (tcp://host:port, file:///path, env://), got {url!r}"
        )
    parsed = urlparse(url)
    if parsed.scheme == "file" and parsed.path:
        folder = os.path.dirname(parsed.path) or "."
        if not os.path.isdir(folder):
            raise InvalidArgumentError(
                f"init_method {url!r}: directory {folder} does not exist; every rank must see "
                "the same existing directory"
            )
