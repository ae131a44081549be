"""The side channel: a namespaced key-value store the core hands every backend for its group setup.

torch's c10d hands ``store`` to a backend factory; so does this core. ``init_process_group`` opens one store per
rendezvous (shared by every backend of the process that meets at the same address), gives each backend initialization
its own namespace ``sagellm_comm/<backend>/e<epoch>/`` and passes it as ``rendezvous.store``; a sub-group's setup
gets ``backend.group_channel(group_id)``. NCCL unique ids, UCX worker addresses, HCCL root info and shared-memory
region names all travel through it. The stores are torch.distributed's, never a home-made one:

- world of one and no ``init_method``: an in-process ``HashStore`` (nobody to meet, no port to collide on);
- the application already initialized torch.distributed: its default store;
- ``init_method`` given, or torchrun's agent hosts the store (``TORCHELASTIC_USE_AGENT_STORE``): ``dist.rendezvous``;
- otherwise a ``TCPStore`` on MASTER_ADDR:MASTER_PORT hosted by rank 0, listening on loopback unless an address
  is configured (``sagellm_comm.listen``), ``multi_tenant`` so that a torch process group initialized later in
  the same process shares the server instead of failing to bind the port.

Before a rank writes anything to a store shared with other processes, it checks the job token
(``sagellm_comm.job``): a process of another job refuses to join and leaves the store as it found it.

Every wait is bounded by the rendezvous timeout and names the ranks whose keys are missing; so is opening the store
itself (torch's ``TCPStore`` client can block past its timeout when a stranger holds MASTER_PORT: it connects, then
waits for a handshake the stranger never sends). The rank hosting a
``TCPStore`` (rank 0) keeps it up, when its last backend is destroyed, until every rank said it is done with it (at
most ``DEPART_WAIT_S``), so a peer still reading a key never finds the store gone.
"""

from __future__ import annotations

import datetime
import errno
import os
import threading
from collections.abc import Sequence
from typing import Any

from sagellm_comm.errors import CommError, CommTimeoutError, GroupInvalidError
from sagellm_comm.job import check_job
from sagellm_comm.listen import listen_socket
from sagellm_comm.retry import retry

__all__ = ["SideChannel", "open_side_channel", "release_side_channel"]

DEPART_WAIT_S = 10.0
DEPARTED = "sagellm_comm/departed"
OPENED = "sagellm_comm/opened"
CLIENT_ATTEMPT_S = 30.0  # one connection attempt; torch logs an error line at the end of each

_lock = threading.Lock()


class _Shared:
    """One process's store for one rendezvous, with how many backends use it and whether this rank hosts it."""

    def __init__(self, store: Any, hosting: bool, session: int = 0) -> None:
        self.store, self.hosting, self.users = store, hosting, 0
        self.session = session  # how many times this process opened this rendezvous (numbers its keys)


_shared: dict[tuple[str, int, int], _Shared] = {}  # (url, rank, world_size) -> the shared store
_sessions: dict[tuple[str, int, int], int] = {}  # (url, rank, world_size) -> how many times it was opened


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


class SideChannel:
    """A namespace of a torch.distributed ``Store`` with bounded waits that name who is missing.

    ``store`` is the torch ``Store`` itself (a ``PrefixStore``), for APIs that take one (e.g.
    ``torch.distributed.init_process_group(store=...)``).
    """

    def __init__(self, store: Any, prefix: str, timeout_s: float, base: Any = None) -> None:
        import torch.distributed as dist

        self.prefix = prefix
        self.timeout_s = float(timeout_s)
        self.base = store if base is None else base
        self.store = dist.PrefixStore(prefix, self.base)

    def scope(self, name: str, timeout_s: float | None = None) -> SideChannel:
        """A nested namespace ``<prefix><name>/`` (e.g. one per group), optionally with its own timeout."""
        return SideChannel(
            self.base, f"{self.prefix}{name}/", self.timeout_s if timeout_s is None else timeout_s, base=self.base
        )

    # ---------------------------------------------------------------------------------------------- basics
    def set(self, key: str, value: bytes | str) -> None:
        """Publish ``value`` (``str`` is UTF-8 encoded) under ``key`` in this namespace."""
        # torch's stub says str; the binding takes bytes too (std::string either way), which keeps values binary
        self.store.set(key, _as_bytes(value))  # type: ignore[arg-type]

    def add(self, key: str, amount: int) -> int:
        """Add ``amount`` to the counter ``key`` (created at 0) and return its new value, atomically."""
        return int(self.store.add(key, amount))

    def check(self, keys: Sequence[str]) -> bool:
        """Whether every key of ``keys`` has been published; never blocks."""
        return bool(self.store.check(list(keys)))

    def get(self, key: str, *, owner: str = "a peer", what: str = "publish it", timeout: float | None = None) -> bytes:
        """The value of ``key``, waiting for it at most ``timeout`` (default: the rendezvous timeout)."""
        self.wait([key], owners=[owner], what=what, timeout=timeout)
        return bytes(self.store.get(key))

    def wait(
        self,
        keys: Sequence[str],
        *,
        owners: Sequence[Any] | None = None,
        what: str = "publish their keys",
        timeout: float | None = None,
    ) -> None:
        """Wait until every key exists; on timeout raise ``COMM_TIMEOUT`` naming the owners of the missing keys."""
        limit = self.timeout_s if timeout is None else float(timeout)
        try:
            self.store.wait(list(keys), datetime.timedelta(seconds=limit))
        except Exception as exc:  # torch raises DistStoreError / RuntimeError on timeout or a lost store
            names = list(owners) if owners is not None else list(keys)
            try:
                missing = [names[i] for i, k in enumerate(keys) if not self.store.check([k])]
            except Exception:  # the store itself is gone (its host, rank 0, exited)
                missing = ["?"]
            raise CommTimeoutError(
                f"side channel {self.prefix!r}: {', '.join(map(str, missing)) or '?'} did not {what} within "
                f"{limit:.1f}s ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); they are not "
                "running, are stuck, or were started with another MASTER_ADDR/MASTER_PORT",
                retryable=False,
            ) from exc

    # ---------------------------------------------------------------------------------------- group helpers
    def exchange(
        self,
        key: str,
        value: bytes | str,
        rank: int,
        world_size: int,
        *,
        names: Sequence[Any] | None = None,
        what: str = "join",
    ) -> list[bytes]:
        """All-gather through the store: every rank posts ``value`` under ``key/<rank>`` and gets all of them in
        rank order. ``names`` (e.g. global ranks) are used in the timeout message."""
        self.set(f"{key}/{rank}", value)
        keys = [f"{key}/{r}" for r in range(world_size)]
        owners = [f"rank {n}" for n in (names if names is not None else range(world_size))]
        self.wait(keys, owners=owners, what=what)
        return [bytes(self.store.get(k)) for k in keys]

    def broadcast(
        self,
        key: str,
        value: bytes | str | None,
        root: int,
        rank: int,
        *,
        root_name: Any = None,
        what: str = "publish it",
    ) -> bytes:
        """Root posts ``value`` under ``key``; everyone returns it (the NCCL unique-id pattern)."""
        if rank == root:
            if value is None:
                raise GroupInvalidError(f"side channel broadcast {key!r}: the root must give a value")
            self.set(key, value)
            return _as_bytes(value)
        return self.get(key, owner=f"rank {root if root_name is None else root_name}", what=what)

    def __repr__(self) -> str:
        return f"SideChannel(prefix={self.prefix!r}, timeout_s={self.timeout_s})"


def _bounded(make: Any, timeout_s: float, stuck: str) -> Any:
    """``make()`` on a helper thread, waited for at most ``timeout_s`` (+1 s for torch's own timeout to fire first).
    Past that the caller gets ``COMM_TIMEOUT`` saying ``stuck``; the thread is left blocked in torch (a C call cannot
    be cancelled) and ends with the process."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append((True, make()))
        except BaseException as exc:
            result.append((False, exc))

    thread = threading.Thread(target=run, name="sagellm-comm-store-open", daemon=True)
    thread.start()
    thread.join(timeout_s + 1.0)
    if not result:
        raise CommTimeoutError(stuck, retryable=True)
    ok, value = result[0]
    if not ok:
        raise value
    return value


def _open_base(rdzv: Any, session: int) -> _Shared:
    import torch.distributed as dist

    rank, world_size, timeout_s = rdzv.rank, rdzv.world_size, rdzv.timeout_s
    timeout = datetime.timedelta(seconds=timeout_s)
    if world_size == 1 and rdzv.init_method is None:
        return _Shared(dist.HashStore(), hosting=False)
    if dist.is_available() and dist.is_initialized():
        return _Shared(dist.distributed_c10d._get_default_store(), hosting=False)  # the application's
    if rdzv.init_method or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        url = rdzv.init_method or "env://"
        store, _, _ = _bounded(
            lambda: next(dist.rendezvous(url, rank=rank, world_size=world_size, timeout=timeout)),
            timeout_s,
            f"rank {rank}: the rendezvous at {url} did not complete within {timeout_s:.1f}s; are all {world_size} "
            "ranks started with the same address?",
        )
        return _Shared(store, hosting=rank == 0 and url.startswith("tcp://"))
    where = f"{rdzv.master_addr}:{rdzv.master_port}"
    stuck = (
        f"rank {rank} connected to {where} but no rendezvous store answered within {timeout_s:.1f}s: another "
        f"process (not rank 0 of this job) holds port {rdzv.master_port} on {rdzv.master_addr}, or rank 0 is "
        "stuck; pick a free MASTER_PORT (or check what listens there: ss -ltnp)"
    )
    try:
        if rank == 0:
            store = _host_store(rdzv, timeout)
            store.set(f"{OPENED}/{session}", "1")
        else:
            store = retry(
                lambda: _live_client(rdzv, stuck, session),
                retry_on=lambda e: not isinstance(e, CommError) or isinstance(e, CommTimeoutError),
                deadline_s=timeout_s,
            )
    except CommTimeoutError:
        raise
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if rank == 0:
            raise GroupInvalidError(
                f"rank 0 could not host the rendezvous store on {where} ({text}); another process holds port "
                f"{rdzv.master_port}: pick a free MASTER_PORT (ss -ltnp shows who listens there)",
                retryable=True,
            ) from exc
        raise CommTimeoutError(
            f"rank {rank} could not reach the rendezvous store at {where} within {timeout_s:.1f}s ({text}); rank 0 "
            "hosts it: is it running, with the same MASTER_ADDR/MASTER_PORT?",
            retryable=True,
        ) from exc
    return _Shared(store, hosting=rank == 0, session=session)


def _host_store(rdzv: Any, timeout: datetime.timedelta) -> Any:
    """Rank 0's ``TCPStore`` server, listening where ``sagellm_comm.listen`` says (loopback by default).

    ``multi_tenant``: a torch process group initialized later in this process on the same port shares the server.
    When the port is taken, it may be by a server of this very process (torch keeps one per port while any store
    object uses it): that one is reused; otherwise binding is retried for a moment, then the port is reported."""
    import torch.distributed as dist

    def make(fd: int | None) -> Any:
        return dist.TCPStore(
            rdzv.master_addr,
            rdzv.master_port,
            rdzv.world_size,
            is_master=True,
            timeout=timeout,
            wait_for_workers=False,
            multi_tenant=True,
            master_listen_fd=fd,  # None: the store opens its own socket
        )

    try:
        sock = listen_socket(rdzv.master_addr, rdzv.master_port, retry_s=0.0)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        try:
            return make(None)  # this process's own server on that port, if torch holds one
        except Exception:
            sock = listen_socket(rdzv.master_addr, rdzv.master_port)
    try:
        store = make(sock.fileno())
    except BaseException:
        sock.close()
        raise
    sock.detach()  # the server owns the descriptor now
    return store


class _NotOpened(CommTimeoutError):
    def __init__(self, rdzv: Any) -> None:
        super().__init__(
            f"rank {rdzv.rank}: the rendezvous store at {rdzv.url} was not (re)opened by rank 0 for this "
            f"initialization within {rdzv.timeout_s:.1f}s; rank 0 did not initialize as often as this rank, or is "
            "stuck",
            retryable=True,
        )


def _live_client(rdzv: Any, stuck: str, session: int) -> Any:
    """A client of rank 0's store as rank 0 opened it for this session, one bounded attempt (retried by the
    caller until the rendezvous timeout).

    A rank that destroys and re-initializes at once can reach the previous session's store: still up (rank 0 has
    not re-opened it yet: no ``opened/<session>`` mark) or stopping (it accepts and never answers), hence the
    mark and attempts of at most ``CLIENT_ATTEMPT_S``."""
    import torch.distributed as dist

    attempt = min(rdzv.timeout_s, CLIENT_ATTEMPT_S)
    store = _bounded(
        lambda: dist.TCPStore(
            rdzv.master_addr,
            rdzv.master_port,
            rdzv.world_size,
            is_master=False,
            timeout=datetime.timedelta(seconds=attempt),
            wait_for_workers=False,
        ),
        attempt,
        stuck,
    )
    try:
        opened = store.check([f"{OPENED}/{session}"])
    except Exception as exc:  # reset by a store that just went down
        raise _NotOpened(rdzv) from exc
    if not opened:
        raise _NotOpened(rdzv)
    store.set_timeout(datetime.timedelta(seconds=rdzv.timeout_s))
    return store


def _check_job(shared: _Shared, rdzv: Any) -> None:
    """The job-token check (``sagellm_comm.job``), before this rank writes anything to the store."""

    def wait(key: str) -> bytes:
        try:
            shared.store.wait([key], datetime.timedelta(seconds=rdzv.timeout_s))
        except Exception as exc:
            raise CommTimeoutError(
                f"rank {rdzv.rank}: rank 0 did not publish the job record at {rdzv.url} within "
                f"{rdzv.timeout_s:.1f}s ({type(exc).__name__}); rank 0 is not running, is stuck, or the store there "
                "is not a sagellm-comm job's",
                retryable=True,
            ) from exc
        return bytes(shared.store.get(key))

    check_job(shared.store, rdzv.rank, rdzv.url, wait)


def open_side_channel(rdzv: Any, backend_name: str) -> SideChannel:
    """The namespace of one backend initialization: ``sagellm_comm/<backend>/e<epoch>/`` on the rendezvous store.

    The epoch counts this rank's initializations of that backend, so a re-initialization after ``destroy()``
    never reads keys the previous one left behind (all ranks initialize the same number of times)."""
    key = (rdzv.url, rdzv.rank, rdzv.world_size)
    with _lock:
        shared = _shared.get(key)
        if shared is None:
            session = _sessions[key] = _sessions.get(key, 0) + 1
            shared = _open_base(rdzv, session)
            if rdzv.world_size > 1:
                _check_job(shared, rdzv)
            _shared[key] = shared
        shared.users += 1
    try:
        epoch = int(shared.store.add(f"sagellm_comm/{backend_name}/inits/{rdzv.rank}", 1))
    except BaseException:
        release_side_channel(rdzv)
        raise
    return SideChannel(shared.store, f"sagellm_comm/{backend_name}/e{epoch}/", rdzv.timeout_s)


def release_side_channel(rdzv: Any) -> None:
    """Drop one backend's use of the shared store. When this process's last user goes, it tells the others it is
    done; the rank hosting the store waits (bounded) until every rank did before the store goes down with it."""
    key = (rdzv.url, rdzv.rank, rdzv.world_size)
    with _lock:
        shared = _shared.get(key)
        if shared is None:
            return
        shared.users -= 1
        if shared.users > 0:
            return
        del _shared[key]
    if rdzv.world_size == 1:
        return
    try:
        shared.store.set(f"{DEPARTED}/{shared.session}/{rdzv.rank}", "1")
        if shared.hosting:
            keys = [f"{DEPARTED}/{shared.session}/{r}" for r in range(rdzv.world_size)]
            shared.store.wait(keys, datetime.timedelta(seconds=min(DEPART_WAIT_S, rdzv.timeout_s)))
    except Exception:  # a peer that crashed never departs; the host stops waiting at the bound and leaves anyway
        pass
