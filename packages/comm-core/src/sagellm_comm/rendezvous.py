"""Where a process group meets: rank, world size and master address, from arguments or the torchrun environment.

``store`` is filled in by ``CommBackend.init_process_group``: the backend's namespaced side channel
(:mod:`sagellm_comm.store`), the way c10d hands a store to a backend factory.

Arguments win over the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, as torchrun sets
them). With neither, the process is a world of one. The timeout comes from the argument, else
``SAGELLM_COMM_TIMEOUT_S``, else ``DEFAULT_TIMEOUT_S``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from sagellm_comm.errors import InvalidArgumentError, RankMismatchError

__all__ = ["DEFAULT_MASTER_ADDR", "DEFAULT_MASTER_PORT", "DEFAULT_TIMEOUT_S", "Rendezvous", "resolve_rendezvous"]

DEFAULT_MASTER_ADDR = "127.0.0.1"
DEFAULT_MASTER_PORT = 29500  # torch.distributed's default
DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Rendezvous:
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
    addr = master_addr or os.environ.get("MASTER_ADDR") or DEFAULT_MASTER_ADDR
    port = master_port if master_port is not None else _env_int("MASTER_PORT")
    port = DEFAULT_MASTER_PORT if port is None else _as_int("master_port", port)
    if not 0 < port < 65536:
        raise InvalidArgumentError(f"master_port must be in 1..65535, got {port}")
    if timeout is None:
        env_t = os.environ.get("SAGELLM_COMM_TIMEOUT_S")
        try:
            timeout = float(env_t) if env_t else DEFAULT_TIMEOUT_S
        except ValueError:
            raise InvalidArgumentError(f"SAGELLM_COMM_TIMEOUT_S={env_t!r} is not a number of seconds") from None
    if not timeout > 0:
        raise InvalidArgumentError(f"timeout must be > 0 seconds, got {timeout}")
    return Rendezvous(rank=rk, world_size=ws, local_rank=rk if local is None else local, master_addr=addr,
                      master_port=port, timeout_s=float(timeout), init_method=init_method)
