"""``TransferEngine``: registered memory and batched one-sided reads/writes between ranks, on NIXL (UCX).

The KV-transfer API (docs/rdma.md has a runnable example)::

    eng = comm.transfer_engine                      # the rdma backend's engine, after init_process_group
    region = eng.register(kv_blocks)                # a contiguous tensor (CPU, or GPU where UCX has CUDA support)
    peers = eng.exchange([region])                  # every rank calls it: descriptors of every rank's regions
    h = eng.write([(region, 0, peers[1][0], 0, 4096)], notify=b"layer0")   # batch to rank 1
    h.wait(30)                                      # or h.poll(); rank 1: eng.wait_notification(0, b"layer0")
    eng.deregister(region)

Endpoints are lazy: a peer's agent metadata is read from the group's side channel (published at init) the first
time this rank talks to it, and kept. A peer that restarted publishes new metadata; a transfer that finds the old
endpoint gone drops it, and the next call connects to the new one. One progress thread per engine receives
notifications (and drives the point-to-point protocol of ``p2p.py``); ``close()`` stops it, releases every
transfer and registration and the NIXL agent.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import torch

from sagellm_comm.errors import (
    CommError,
    CommTimeoutError,
    GroupInvalidError,
    InvalidArgumentError,
    P2PFailedError,
)
from sagellm_comm_rdma.binding import DEFAULT_PROGRESS_DELAY_US, Agent, NixlFailure
from sagellm_comm_rdma.regions import (
    MemoryRegion,
    RegionDescriptor,
    check_span,
    decode_descriptors,
    encode_descriptors,
)
from sagellm_comm_rdma.transport import TransportLog

__all__ = ["CONTROL", "TransferEngine", "TransferHandle"]

CONTROL = b"\x00sgl-p2p\x00"
# NIXL keeps every remote region it was told about until the peer's whole view is dropped; each point-to-point
# message loads one (the sender's registration of it), so a peer's view is reloaded after this many
RELOAD_AFTER = 1024  # notifications starting with this drive the P2P protocol; the rest are the user's
IDLE_POLL_S = 2e-3
BUSY_POLL_S = (20e-6, 500e-6)


def _spans_of(buffer: Any, what: str) -> tuple[Any, str, int, int, int]:
    """(kept object, memory kind, address, length, device id) of a tensor or buffer-protocol object."""
    if isinstance(buffer, torch.Tensor):
        t = buffer
    else:
        try:
            t = torch.frombuffer(buffer, dtype=torch.uint8)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"{what}: expected a tensor or a writable buffer (bytearray, numpy array), got "
                f"{type(buffer).__name__} ({exc})"
            ) from exc
    if not t.is_contiguous():
        raise InvalidArgumentError(
            f"{what}: the tensor is not contiguous; register a contiguous tensor (KV blocks "
            "are one contiguous allocation) or .contiguous() a copy"
        )
    nbytes = t.numel() * t.element_size()
    if nbytes == 0:
        raise InvalidArgumentError(f"{what}: the buffer is empty (0 bytes); there is nothing to register")
    if t.device.type == "cpu":
        return t, "DRAM", t.data_ptr(), nbytes, 0
    if t.device.type == "cuda":
        return t, "VRAM", t.data_ptr(), nbytes, t.device.index or 0
    raise InvalidArgumentError(
        f"{what}: {t.device.type} memory is not supported by NIXL's UCX backend (CPU and CUDA memory are)"
    )


class TransferHandle:
    """One posted batch: ``poll()`` (never blocks), ``wait(timeout)``; raises ``COMM_P2P_FAILED`` if it failed."""

    def __init__(
        self,
        engine: TransferEngine,
        handle: Any,
        op: str,
        peer: int,
        regions: list[MemoryRegion],
        nbytes: int,
        count: int,
    ) -> None:
        self._engine = engine
        self._handle = handle
        self.op, self.peer, self.nbytes, self.count = op, peer, nbytes, count
        self._regions = regions
        self._done = False
        self._error: CommError | None = None
        self._lock = threading.Lock()

    def poll(self) -> bool:
        """True once every descriptor of the batch landed; raises if the transfer failed."""
        with self._lock:
            if not self._done and self._engine.closed:
                self._done, self._error = (
                    True,
                    GroupInvalidError(
                        f"rdma {self.op} to rank {self.peer}: the transfer engine was closed (backend destroyed)"
                    ),
                )
            if not self._done:
                try:
                    state = self._engine.agent.state(self._handle)
                except NixlFailure as exc:
                    state, detail = "ERR", str(exc)
                else:
                    detail = ""
                if state == "DONE":
                    self._finish(None)
                elif state != "PROC":
                    self._finish(
                        self._engine._peer_error(
                            self.peer,
                            f"{self.op} of {self.count} block(s), {self.nbytes} bytes",
                            detail or "NIXL reported ERR",
                        )
                    )
            if self._error is not None:
                raise self._error
            return self._done

    def _finish(self, error: CommError | None) -> None:
        self._done, self._error = True, error
        with contextlib.suppress(NixlFailure):
            self._engine.agent.release(self._handle)
        self._engine._untrack(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done (True); ``COMM_TIMEOUT`` after ``timeout`` seconds (default: the group's timeout)."""
        limit = self._engine.timeout_s if timeout is None else float(timeout)
        deadline = time.monotonic() + limit
        pause = BUSY_POLL_S[0]
        while not self.poll():
            if time.monotonic() >= deadline:
                raise CommTimeoutError(
                    f"rdma {self.op} to rank {self.peer} ({self.count} block(s), {self.nbytes} bytes) did not complete "
                    f"within {limit:.1f}s; rank {self.peer} may be stuck or gone. Wait again, or destroy the "
                    "backend",
                    retryable=True,
                )
            time.sleep(pause)
            pause = min(pause * 2, BUSY_POLL_S[1])
        return True

    @property
    def done(self) -> bool:
        return self._done

    def __repr__(self) -> str:
        state = "failed" if self._error else "done" if self._done else "in flight"
        return f"<TransferHandle {self.op} to rank {self.peer}: {self.count} block(s), {self.nbytes} B, {state}>"


class TransferEngine:
    """Registered memory and batched one-sided transfers between the ranks of one group (see the module doc)."""

    def __init__(self, rank: int, world_size: int, channel: Any, timeout_s: float) -> None:
        self.rank, self.world_size, self.channel, self.timeout_s = rank, world_size, channel, float(timeout_s)
        self.transport_log = TransportLog.enable()
        self.agent_name = f"sgl-r{rank}-{uuid.uuid4().hex[:12]}"
        delay = os.environ.get("SAGELLM_COMM_RDMA_PROGRESS_DELAY_US", "").strip()
        self.agent = Agent(self.agent_name, int(delay) if delay.isdigit() else DEFAULT_PROGRESS_DELAY_US)
        self.transport_log.attach()  # UCX opened its log with the agent: read it from here on, leave no file
        self._lock = threading.RLock()
        self._peers: dict[int, str] = {}  # rank -> connected agent name
        self._loaded: set[tuple[str, int]] = set()  # (agent, region id) whose remote keys are loaded
        self._peer_md: dict[int, bytes] = {}  # rank -> its agent's full metadata (to reload its view)
        self._p2p_loads: dict[int, int] = {}  # rank -> P2P regions of it loaded since its view was (re)loaded
        self._connect_lock = threading.Lock()
        self._post_lock = threading.Lock()
        self._regions: dict[int, MemoryRegion] = {}  # region id -> this rank's user-registered regions
        self._internal = 0  # registrations made by the P2P protocol, outstanding
        self._ids = itertools.count(1)
        self._exchanges = itertools.count(1)
        self._in_flight: set[TransferHandle] = set()
        self._inbox: dict[int, collections.deque[bytes]] = collections.defaultdict(collections.deque)
        self._inbox_cv = threading.Condition(threading.Lock())
        self._pollers: list[Callable[[], bool]] = []
        self._control: Callable[[int, bytes], None] | None = None
        self._on_close: list[Callable[[], None]] = []
        self._kick = threading.Event()
        self._stop = False
        self._failure: BaseException | None = None
        channel.set(
            f"agent/{rank}",
            json.dumps(
                {
                    "agent": self.agent_name,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "md": self.agent.metadata().hex(),
                }
            ),
        )
        self._thread = threading.Thread(target=self._progress, name=f"sagellm-rdma-progress-r{rank}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------- peers
    def _check_rank(self, peer: Any, what: str) -> int:
        if isinstance(peer, bool) or not isinstance(peer, int) or not 0 <= peer < self.world_size:
            raise InvalidArgumentError(f"{what}: rank must be an int in 0..{self.world_size - 1}, got {peer!r}")
        return peer

    def connect(self, peer: int) -> str:
        """The NIXL agent name of rank ``peer``, connecting on first use (its metadata from the side channel)."""
        with self._lock:
            name = self._peers.get(peer)
        if name is not None:
            return name
        if peer == self.rank:
            raise InvalidArgumentError(f"rank {peer} is this rank: transfers go to other ranks (copy locally)")
        raw = self.channel.get(f"agent/{peer}", owner=f"rank {peer}", what="publish its rdma agent")
        info = json.loads(raw)
        with self._connect_lock:  # the caller's thread and the progress thread may both connect first
            name = self._peers.get(peer)
            if name is not None:
                return name
            self.transport_log.mark(info["agent"])
            metadata = bytes.fromhex(info["md"])
            try:
                name = self.agent.add_remote(metadata)
            except NixlFailure as exc:
                raise P2PFailedError(
                    f"rdma: cannot connect to rank {peer} (agent {info['agent']} on {info['host']}): {exc}"
                ) from exc
            with self._lock:
                self._peers[peer] = name
                self._peer_md[peer] = metadata
                self._p2p_loads[peer] = 0
            return name

    def _forget(self, peer: int) -> None:
        """Drop a peer whose endpoint failed: the next call reconnects (to a restarted peer's new agent)."""
        with self._lock:
            name = self._peers.pop(peer, None)
            if name is not None:
                self._loaded = {k for k in self._loaded if k[0] != name}
        if name is not None:
            with contextlib.suppress(NixlFailure):
                self.agent.remove_remote(name)

    def _peer_error(self, peer: int, what: str, detail: str) -> P2PFailedError:
        self._forget(peer)
        return P2PFailedError(
            f"rdma {what} with rank {peer} failed: {detail}. Rank {peer} left or restarted; its "
            "regions must be looked up again (a restarted rank publishes new ones)"
        )

    def transport(self, peer: int) -> str:
        """The transport UCX uses to move data to rank ``peer`` (e.g. ``tcp/eth0 (inter-node)``,
        ``cma/memory (intra-node)``, ``rc_mlx5/mlx5_0:1 (inter-node)``)."""
        self._check_rank(peer, "transport")
        name = self._peers.get(peer)
        if name is None:
            return "unknown: not connected to this peer yet"
        return self.transport_log.transport(name)

    # ------------------------------------------------------------------------------------------- memory
    def register(self, buffer: Any) -> MemoryRegion:
        """Register a contiguous tensor (or a writable buffer) for one-sided transfers; returns its region. The
        same memory registered twice (or overlapping a registered region) is ``INVALID_ARGUMENT``."""
        kept, kind, addr, nbytes, dev = _spans_of(buffer, "register")
        with self._lock:
            for r in self._regions.values():
                d = r.descriptor
                if d.kind == kind and d.device_id == dev and addr < d.address + d.length and d.address < addr + nbytes:
                    raise InvalidArgumentError(
                        f"register: bytes [{addr:#x}, {addr + nbytes:#x}) overlap region {d.region_id} [{d.address:#x},"
                        f" {d.address + d.length:#x}) registered earlier; deregister it first or reuse that region"
                    )
        region = self._register(kept, kind, addr, nbytes, dev)
        with self._lock:
            self._regions[region.descriptor.region_id] = region
        return region

    def _register(self, kept: Any, kind: str, addr: int, nbytes: int, dev: int) -> MemoryRegion:
        try:
            reg = self.agent.register(kind, [(addr, nbytes, dev)])
            md = self.agent.partial_metadata(reg)
        except NixlFailure as exc:
            raise P2PFailedError(f"rdma: NIXL could not register {nbytes} bytes of {kind}: {exc}") from exc
        desc = RegionDescriptor(self.rank, self.agent_name, next(self._ids), addr, nbytes, kind, dev, md)
        return MemoryRegion(desc, kept, reg)

    def register_internal(self, tensor: torch.Tensor) -> MemoryRegion:
        """A registration for the P2P protocol (overlap allowed: the same tensor may be in two sends)."""
        kept, kind, addr, nbytes, dev = _spans_of(tensor, "p2p")
        region = self._register(kept, kind, addr, nbytes, dev)
        with self._lock:
            self._internal += 1
        return region

    def deregister(self, region: MemoryRegion) -> None:
        """Release a region. A region with transfers in flight is refused (wait for them first)."""
        if not isinstance(region, MemoryRegion):
            raise InvalidArgumentError(f"deregister takes a MemoryRegion from register(), got {type(region).__name__}")
        with self._lock:
            if not region.registered:
                raise InvalidArgumentError(f"region {region.descriptor.region_id} is already deregistered")
            busy = sum(1 for h in self._in_flight if any(r is region for r in h._regions))
            if busy:
                raise InvalidArgumentError(
                    f"region {region.descriptor.region_id} has {busy} transfer(s) in flight; "
                    "wait for them before deregistering"
                )
            internal = region.descriptor.region_id not in self._regions
            self._regions.pop(region.descriptor.region_id, None)
            if internal:
                self._internal -= 1
            region.registered = False
        with contextlib.suppress(NixlFailure):
            self.agent.deregister(region.registration)

    @property
    def registrations(self) -> int:
        """Regions registered now (the user's plus the P2P protocol's in-flight ones)."""
        with self._lock:
            return len(self._regions) + self._internal

    # ------------------------------------------------------------------------------------------- descriptors
    def exchange(self, regions: Sequence[MemoryRegion]) -> list[list[RegionDescriptor]]:
        """Every rank calls this (same order of calls on every rank): returns, per rank, the descriptors of the
        regions that rank passed. Travels through the group's side channel."""
        mine = [self._own(r, "exchange") for r in regions]
        key = f"regions/{next(self._exchanges)}"
        payload = encode_descriptors(mine)
        got = self.channel.exchange(key, payload, self.rank, self.world_size, what="exchange rdma regions")
        return [decode_descriptors(raw) for raw in got]

    def publish(self, name: str, regions: Sequence[MemoryRegion]) -> None:
        """Post this rank's descriptors under ``name`` for peers to ``lookup`` (no collective call needed)."""
        mine = [self._own(r, "publish") for r in regions]
        self.channel.set(f"named/{self.rank}/{name}", encode_descriptors(mine))

    def lookup(self, peer: int, name: str, timeout: float | None = None) -> list[RegionDescriptor]:
        """Rank ``peer``'s descriptors published under ``name`` (waiting at most ``timeout`` for them)."""
        self._check_rank(peer, "lookup")
        raw = self.channel.get(
            f"named/{peer}/{name}", owner=f"rank {peer}", what=f"publish regions {name!r}", timeout=timeout
        )
        return decode_descriptors(raw)

    def _own(self, region: Any, what: str) -> RegionDescriptor:
        if not isinstance(region, MemoryRegion) or not region.registered:
            raise InvalidArgumentError(f"{what} takes registered MemoryRegions, got {region!r}")
        return region.descriptor

    # ------------------------------------------------------------------------------------------- transfers
    def write(self, spans: Sequence[Any], notify: bytes | None = None) -> TransferHandle:
        """Post one batch of one-sided writes ``(local_region, local_offset, remote_descriptor, remote_offset,
        length)`` to one peer; the peer gets ``notify`` (if given) once all of it landed."""
        return self._post("WRITE", spans, notify)

    def read(self, spans: Sequence[Any], notify: bytes | None = None) -> TransferHandle:
        """Post one batch of one-sided reads (same entries as ``write``: remote bytes land in the local region)."""
        return self._post("READ", spans, notify)

    def _post(self, op: str, spans: Sequence[Any], notify: bytes | None, *, internal: bool = False) -> TransferHandle:
        self._require_open()
        what = op.lower()
        if not isinstance(spans, (list, tuple)) or not spans:
            raise InvalidArgumentError(
                f"{what}: give a non-empty list of (local_region, local_offset, "
                "remote_descriptor, remote_offset, length)"
            )
        checked = [check_span(i, s, self.rank) for i, s in enumerate(spans)]
        peers = {c[2].rank for c in checked}
        if len(peers) != 1:
            raise InvalidArgumentError(
                f"{what}: one batch goes to one peer; this one names ranks {sorted(peers)} (post one batch per peer)"
            )
        peer = self._check_rank(peers.pop(), what)
        if notify is not None and not isinstance(notify, (bytes, bytearray)):
            raise InvalidArgumentError(f"{what}: notify must be bytes, got {type(notify).__name__}")
        if notify and not internal and bytes(notify).startswith(CONTROL):
            raise InvalidArgumentError(f"{what}: notify messages may not start with the P2P protocol's prefix")
        name = self.connect(peer)
        for _, _, remote, _, _ in checked:
            if remote.agent != name:
                raise InvalidArgumentError(
                    f"{what}: the remote region {remote.region_id} belongs to rank {peer}'s earlier agent "
                    f"{remote.agent}; rank {peer} now runs agent {name} (it restarted): look its regions up again"
                )
        kind = checked[0][0].descriptor.kind
        local = [(c[0].address + c[1], c[4], c[0].descriptor.device_id) for c in checked]
        remote_spans = [(c[2].address + c[3], c[4], c[2].device_id) for c in checked]
        with self._post_lock:  # loading, reloading and posting to a peer's view happen one at a time
            if internal:
                self._maybe_reload(peer, name)
            for _, _, remote, _, _ in checked:
                self._load(name, remote, internal)
            try:
                handle = self.agent.post(op, kind, local, remote_spans, name, bytes(notify or b""))
            except NixlFailure as exc:
                raise self._peer_error(peer, f"{what} of {len(checked)} block(s)", str(exc)) from exc
            h = TransferHandle(
                self, handle, what, peer, [c[0] for c in checked], sum(c[4] for c in checked), len(checked)
            )
            with self._lock:
                self._in_flight.add(h)
        return h

    def reload_due(self, peer: int) -> bool:
        """True once rank ``peer``'s view holds ``RELOAD_AFTER`` point-to-point regions (reloaded at the next
        transfer to it that finds nothing in flight)."""
        return self._p2p_loads.get(peer, 0) >= RELOAD_AFTER

    def _maybe_reload(self, peer: int, name: str) -> None:
        """Drop and reload rank ``peer``'s view once it holds ``RELOAD_AFTER`` point-to-point regions, when no
        transfer to it is in flight (called with the post lock held, so none can start meanwhile)."""
        with self._lock:
            if not self.reload_due(peer) or any(h.peer == peer for h in self._in_flight):
                return
            metadata = self._peer_md[peer]
            self._loaded = {k for k in self._loaded if k[0] != name}
            self._p2p_loads[peer] = 0
        try:
            self.agent.remove_remote(name)
            self.agent.add_remote(metadata)
        except NixlFailure as exc:
            raise self._peer_error(peer, "reloading the view", str(exc)) from exc

    def _load(self, name: str, remote: RegionDescriptor, internal: bool) -> None:
        key = (name, remote.region_id)
        if key in self._loaded:
            return
        try:
            self.agent.add_remote(remote.metadata)
        except NixlFailure as exc:
            raise P2PFailedError(f"rdma: cannot load rank {remote.rank}'s region {remote.region_id}: {exc}") from exc
        with self._lock:
            if internal:  # used once: not worth remembering, but counted towards the next reload
                self._p2p_loads[remote.rank] = self._p2p_loads.get(remote.rank, 0) + 1
            else:
                self._loaded.add(key)

    def _untrack(self, handle: TransferHandle) -> None:
        with self._lock:
            self._in_flight.discard(handle)

    # ------------------------------------------------------------------------------------------- notifications
    def notify(self, peer: int, message: bytes) -> None:
        """Send a standalone notification (no data) to rank ``peer``."""
        self._require_open()
        self._check_rank(peer, "notify")
        if not isinstance(message, (bytes, bytearray)) or bytes(message).startswith(CONTROL):
            raise InvalidArgumentError("notify: message must be bytes not starting with the P2P protocol's prefix")
        self.send_control(peer, bytes(message))

    def send_control(self, peer: int, message: bytes) -> None:
        name = self.connect(peer)
        try:
            self.agent.notify(name, message)
        except NixlFailure as exc:
            raise self._peer_error(peer, "notification", str(exc)) from exc

    def notifications(self, peer: int | None = None) -> list[tuple[int, bytes]]:
        """Take the notifications received so far (from ``peer``, or from everyone), as ``(rank, message)``."""
        with self._inbox_cv:
            ranks = [peer] if peer is not None else sorted(self._inbox)
            out = []
            for r in ranks:
                box = self._inbox.get(r)
                while box:
                    out.append((r, box.popleft()))
            return out

    def wait_notification(self, peer: int, message: bytes | None = None, timeout: float | None = None) -> bytes:
        """Block until rank ``peer`` sent ``message`` (or any notification if None) and take it;
        ``COMM_TIMEOUT`` after ``timeout`` seconds (default: the group's timeout)."""
        self._check_rank(peer, "wait_notification")
        limit = self.timeout_s if timeout is None else float(timeout)
        deadline = time.monotonic() + limit
        with self._inbox_cv:
            while True:
                box = self._inbox[peer]
                for i, m in enumerate(box):
                    if message is None or m == message:
                        del box[i]
                        return m
                self._raise_if_failed()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CommTimeoutError(
                        f"rdma: no notification {message!r} from rank {peer} within {limit:.1f}s; "
                        "it has not finished its transfer, or it left",
                        retryable=True,
                    )
                self._inbox_cv.wait(min(left, 0.1))

    # ------------------------------------------------------------------------------------------- progress
    def add_poller(
        self, poll: Callable[[], bool], control: Callable[[int, bytes], None], on_close: Callable[[], None]
    ) -> None:
        """The P2P protocol: ``poll()`` runs on every pass (True: it has work pending); ``control(rank, msg)``
        gets every protocol notification; ``on_close()`` runs once the progress thread stopped, before the engine
        releases anything."""
        self._pollers.append(poll)
        self._control = control
        self._on_close.append(on_close)

    def kick(self) -> None:
        self._kick.set()

    def _rank_of(self, agent: str) -> int | None:
        with self._lock:
            for r, name in self._peers.items():
                if name == agent:
                    return r
        if agent.startswith("sgl-r"):
            with contextlib.suppress(ValueError):
                return int(agent[5:].split("-", 1)[0])
        return None

    def _progress(self) -> None:
        pause = BUSY_POLL_S[0]
        try:
            while not self._stop:
                busy = False
                got = self.agent.notifications()
                for agent, messages in got.items():
                    rank = self._rank_of(agent)
                    if rank is None:
                        continue
                    for m in messages:
                        if m.startswith(CONTROL) and self._control is not None:
                            self._control(rank, m[len(CONTROL) :])
                        else:
                            with self._inbox_cv:
                                self._inbox[rank].append(m)
                                self._inbox_cv.notify_all()
                    busy = True
                for poll in self._pollers:
                    busy = poll() or busy
                if busy:
                    if got:
                        pause = BUSY_POLL_S[0]
                    self._kick.wait(pause)
                    pause = min(pause * 2, BUSY_POLL_S[1])
                else:
                    pause = BUSY_POLL_S[0]
                    self._kick.wait(IDLE_POLL_S)
                self._kick.clear()
        except BaseException as exc:  # the agent failed underneath us: every waiter hears about it
            if not self._stop:
                self._failure = exc
                with self._inbox_cv:
                    self._inbox_cv.notify_all()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise P2PFailedError(
                f"rdma: the progress thread stopped: {type(self._failure).__name__}: "
                f"{self._failure}; destroy the backend and initialize again"
            )

    @property
    def closed(self) -> bool:
        return self._stop

    def _require_open(self) -> None:
        if self._stop:
            raise GroupInvalidError("rdma: the transfer engine is closed (the backend was destroyed)")
        self._raise_if_failed()

    def close(self) -> None:
        """Stop the progress thread; release every transfer, registration and peer, then the agent."""
        if self._stop:
            return
        self._stop = True
        self._kick.set()
        self._thread.join(timeout=5.0)
        for fn in self._on_close:
            fn()
        with self._lock:
            handles, regions = list(self._in_flight), list(self._regions.values())
            peers = list(self._peers.values())
            self._in_flight.clear()
        for h in handles:
            with contextlib.suppress(NixlFailure):
                self.agent.release(h._handle)
        for r in regions:
            with contextlib.suppress(InvalidArgumentError):
                self.deregister(r)
        for name in peers:
            with contextlib.suppress(NixlFailure):
                self.agent.remove_remote(name)
        self._peers.clear()
        self.agent.close()
        self.transport_log.relay_warnings()
