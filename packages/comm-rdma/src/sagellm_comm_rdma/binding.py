"""The NIXL binding: one agent with the UCX backend, every call serialized, NIXL's errors as ``NixlFailure``.

This is the only module that imports NIXL (NVIDIA Inference Xfer Library; PyPI ``nixl-cu12`` / ``nixl-cu13`` or
the ``nixl`` meta package that picks one for the CUDA it finds). It does not import the sagellm-comm core, so it
loads wherever NIXL does (the GPU machine's Python included). Memory is described by plain ``(address, length,
device_id)`` tuples of one memory kind (``"DRAM"`` for host memory, ``"VRAM"`` for GPU memory).

NIXL's Python agent is not thread safe when created without a listener thread, so ``Agent`` holds a lock around
every call: the engine's progress thread and the caller's thread share one agent.

NIXL's own progress thread drives UCX (a TCP target must progress to receive a put). Its Python API starts it with
no delay between passes, which spins a whole core per process even when idle; ``Agent`` starts it with
``progress_delay_us`` (default 100 us, ``SAGELLM_COMM_RDMA_PROGRESS_DELAY_US``): about 2% of a core when idle, and on
the 2-core test machine faster transfers than the spinning thread (which competes with the ranks for the cores).

UCX settings changed from UCX's defaults (``UCX_DEFAULTS``, applied only where the environment does not set them):
TCP segments of 1 MiB instead of 8/64 KiB. Over TCP a READ (how the receiver of a send/recv fetches the message)
then runs at the stream's speed instead of less than half of it (measured between two simulated hosts:
64 MiB at 2.0 instead of 0.97 GB/s).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from typing import Any

__all__ = ["Agent", "NixlFailure", "load_nixl"]

_MODULES = ("nixl._api", "nixl_cu13._api", "nixl_cu12._api")
_CREATE_LOCK = threading.Lock()
DEFAULT_PROGRESS_DELAY_US = 100
UCX_DEFAULTS = {"UCX_TCP_TX_SEG_SIZE": "1m", "UCX_TCP_RX_SEG_SIZE": "1m"}


class NixlFailure(Exception):
    """A NIXL call failed. ``kind``: ``"disconnected"`` (the remote agent is gone), ``"not_found"`` (a memory
    region or agent NIXL does not know), ``"error"`` (anything else)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def load_nixl() -> Any:
    """NIXL's ``_api`` module: the meta package's pick, else the CUDA 13 build, else the CUDA 12 build."""
    errors = []
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        logging.getLogger("nixl").setLevel(logging.WARNING)  # NIXL logs every agent creation at INFO
        return module
    raise ImportError("NIXL is not installed (pip install nixl-cu12, or nixl-cu13 for CUDA 13): " + "; ".join(errors))


def _failure(exc: BaseException) -> NixlFailure:
    name = type(exc).__name__
    if "Disconnect" in name:
        kind = "disconnected"
    elif "NotFound" in name:
        kind = "not_found"
    else:
        kind = "error"
    return NixlFailure(kind, f"{name}: {exc}")


class Agent:
    """A NIXL agent named ``name`` with the UCX backend and NIXL's own progress thread."""

    def __init__(self, name: str, progress_delay_us: int = DEFAULT_PROGRESS_DELAY_US) -> None:
        for key, value in UCX_DEFAULTS.items():  # UCX reads its environment when the agent creates its context
            os.environ.setdefault(key, value)
        api = load_nixl()
        self._api = api
        self._lock = threading.Lock()
        self.name = name
        config = api.nixl_agent_config(enable_prog_thread=True, enable_listen_thread=False, backends=["UCX"])
        bind = api.nixlBind
        real = bind.nixlAgent

        def with_delay(agent_name: str, agent_config: Any) -> Any:  # nixl_agent hard-codes pthrDelay = 0
            agent_config.pthrDelay = int(progress_delay_us)
            return real(agent_name, agent_config)

        with _CREATE_LOCK:
            bind.nixlAgent = with_delay
            try:
                self._agent = api.nixl_agent(name, config)
            except Exception as exc:
                raise _failure(exc) from exc
            finally:
                bind.nixlAgent = real
        if "UCX" not in self._agent.backends:
            raise NixlFailure("error", f"NIXL has no UCX plugin here (plugins: {self._agent.plugin_list})")

    def _call(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            try:
                return fn(*args)
            except Exception as exc:
                raise _failure(exc) from exc

    # ------------------------------------------------------------------------------------------- memory
    def register(self, kind: str, spans: list[tuple[int, int, int]]) -> Any:
        """Register memory (``spans`` of one ``kind``); returns the registration to pass to ``deregister``."""
        a = self._agent
        return self._call(lambda: a.register_memory([(addr, n, dev, "") for addr, n, dev in spans], kind))

    def deregister(self, registration: Any) -> None:
        self._call(self._agent.deregister_memory, registration)

    def metadata(self) -> bytes:
        """This agent's full metadata (connection info and every registration)."""
        return bytes(self._call(self._agent.get_agent_metadata))

    def partial_metadata(self, registration: Any) -> bytes:
        """Connection info plus the remote keys of one registration: what a peer loads to reach it."""
        return bytes(self._call(self._agent.get_partial_agent_metadata, registration, True, ["UCX"]))

    # ------------------------------------------------------------------------------------------- peers
    def add_remote(self, metadata: bytes) -> str:
        """Load a peer's (full or partial) metadata; returns the peer agent's name."""
        name = self._call(self._agent.add_remote_agent, metadata)
        return name.decode() if isinstance(name, bytes) else str(name)

    def remove_remote(self, name: str) -> None:
        self._call(self._agent.remove_remote_agent, name)

    def notify(self, peer: str, message: bytes) -> None:
        self._call(self._agent.send_notif, peer, message)

    def notifications(self) -> dict[str, list[bytes]]:
        """New notifications since the last call, per sending agent name."""
        got = self._call(self._agent.get_new_notifs)
        return {(k.decode() if isinstance(k, bytes) else str(k)): [bytes(m) for m in v] for k, v in got.items()}

    # ------------------------------------------------------------------------------------------- transfers
    def post(
        self,
        op: str,
        kind: str,
        local: list[tuple[int, int, int]],
        remote: list[tuple[int, int, int]],
        peer: str,
        message: bytes = b"",
    ) -> Any:
        """Create and post one batched transfer (``op`` ``"WRITE"`` or ``"READ"``); the peer receives ``message``
        as a notification once every descriptor has landed. Returns the handle for ``state``/``release``."""
        a = self._agent

        def create_and_post() -> Any:
            handle = a.initialize_xfer(op, a.get_xfer_descs(local, kind), a.get_xfer_descs(remote, kind), peer, message)
            try:
                state = a.transfer(handle)
            except BaseException:
                a.release_xfer_handle(handle)
                raise
            if state == "ERR":
                a.release_xfer_handle(handle)
                raise RuntimeError(f"NIXL refused to post the {op} to {peer}")
            return handle

        return self._call(create_and_post)

    def state(self, handle: Any) -> str:
        """``"DONE"``, ``"PROC"`` or ``"ERR"``."""
        return str(self._call(self._agent.check_xfer_state, handle))

    def release(self, handle: Any) -> None:
        self._call(self._agent.release_xfer_handle, handle)

    def close(self) -> None:
        """Drop the agent (NIXL releases its UCX workers and progress thread when it is collected)."""
        with self._lock:
            self._agent = None
