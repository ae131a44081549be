"""Which transport UCX chose for each peer, read from UCX's own protocol report.

UCX picks a transport per endpoint: verbs (``rc_mlx5/mlx5_0:1``...) where an RDMA device reaches the peer, shared
memory (``cma/memory``, ``sysv/memory``, ``posix/memory``) when the peer is on the same machine, TCP otherwise. With
``UCX_PROTO_INFO=y`` it prints, the first time an endpoint configuration uses a protocol, a table such as::

    | r0 inter-node cfg#1                                      |
    | remote memory write by ucp_put* from host memory to host |
    | 0..inf | zero-copy   | tcp/sgl0                          |

``TransportLog`` turns those tables into a per-peer answer. ``enable()`` must run before the process's first NIXL
agent (UCX reads its environment once); it sets ``UCX_PROTO_INFO=y`` and points UCX's log at a file of its own
(``UCX_LOG_FILE``), unless the user already set either (then the report is ``unknown``) or
``SAGELLM_COMM_RDMA_TRANSPORT_REPORT=0``. Once UCX has opened the file, ``attach()`` opens it for reading and
unlinks it: nothing is left on disk however the process ends. UCX's own warnings and errors, which now land in that
file too, are passed on to the ``sagellm_comm.rdma.ucx`` logger (stderr by default) whenever the file is read (at
every transport question and when the engine closes).

A peer's transport is the remote-memory (put/get) table that first appears after the engine connected to it; peers
that share an endpoint configuration with an earlier one print no new table and get that configuration's answer.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import uuid
from typing import BinaryIO

__all__ = ["TransportLog"]

_TITLE = re.compile(r"\|\s*(\S+)\s+(intra-node|inter-node|self)\s+cfg#(\d+)\s*\|")
_RMA = re.compile(r"\|\s*remote memory (write|read) by")
_ROW = re.compile(r"\|\s*(\d+\.\.inf|\d+\.\.\d+|\d+)\s*\|[^|]*\|\s*([^|]*?)\s*\|\s*$")
_ENV_SWITCH = "SAGELLM_COMM_RDMA_TRANSPORT_REPORT"
_LOG = logging.getLogger("sagellm_comm.rdma.ucx")


class TransportLog:
    """UCX's protocol report for this process (one per process: UCX's log file is process-wide)."""

    _instance: TransportLog | None = None
    _lock = threading.Lock()

    def __init__(self, path: str | None, reason: str = "") -> None:
        self.path = path
        self.reason = reason  # why there is no report (path None)
        self._marks: dict[str, int] = {}  # peer key -> log size when the engine connected to it
        self._file: BinaryIO | None = None  # the log, opened and unlinked once UCX created it
        self._relayed = 0  # bytes of the log whose UCX warnings were passed on
        self._read_lock = threading.Lock()

    @classmethod
    def enable(cls) -> TransportLog:
        """Turn UCX's protocol report on for this process (idempotent); call before the first NIXL agent."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls._setup()
            return cls._instance

    @classmethod
    def _setup(cls) -> TransportLog:
        if os.environ.get(_ENV_SWITCH, "1").strip() in ("0", "false", "no", "off"):
            return cls(None, f"{_ENV_SWITCH}=0")
        if "UCX_LOG_FILE" in os.environ or "UCX_PROTO_INFO" in os.environ:
            return cls(None, "UCX_LOG_FILE or UCX_PROTO_INFO was set by the user")
        # the pid alone is not unique: ranks in separate PID namespaces share /tmp
        path = os.path.join(tempfile.gettempdir(), f"sagellm-comm-ucx-{os.getpid()}-{uuid.uuid4().hex[:8]}.log")
        os.environ["UCX_PROTO_INFO"] = "y"
        os.environ["UCX_LOG_FILE"] = path
        return cls(path)

    def attach(self) -> None:
        """Open UCX's log for reading and unlink it (once UCX created it: after the first agent)."""
        with self._read_lock:
            if self._file is not None or not self.path:
                return
            try:
                self._file = open(self.path, "rb")  # noqa: SIM115 - lives as long as the process
                os.unlink(self.path)
            except OSError:
                self._file = None

    def _text(self, start: int) -> str:
        """The log from byte ``start`` on; complete UCX warning lines not passed on before go to the logger."""
        self.attach()
        with self._read_lock:
            if self._file is None:
                return ""
            base = min(start, self._relayed)
            self._file.seek(base)
            raw = self._file.read()
            fresh = raw[self._relayed - base :]
            complete = fresh[: fresh.rfind(b"\n") + 1]
            for line in complete.decode(errors="replace").splitlines():
                if " UCX  WARN" in line or " UCX  ERROR" in line:
                    _LOG.warning("UCX: %s", line.split(" UCX ", 1)[1].strip())
            self._relayed += len(complete)
            return raw[start - base :].decode(errors="replace")

    def relay_warnings(self) -> None:
        """Pass UCX's new warnings and errors on to the logger (the engine calls it when it closes)."""
        if self.path:
            self._text(self._relayed)

    def mark(self, peer: str) -> None:
        """Remember where the log ends now: tables after this point may belong to ``peer``."""
        self._marks.setdefault(peer, self._size())

    def _size(self) -> int:
        self.attach()
        if self._file is None:
            return 0
        try:
            return os.fstat(self._file.fileno()).st_size
        except OSError:
            return 0

    def tables(self, start: int = 0) -> list[tuple[str, str]]:
        """``(endpoint class, transports)`` of every remote-memory table from byte ``start`` on, in order."""
        if not self.path:
            return []
        text = self._text(start)
        out: list[tuple[str, str]] = []
        klass, in_rma, rows = "", False, []
        for line in text.splitlines():
            m = _TITLE.search(line)
            if m:
                if in_rma and rows:
                    out.append((klass, ", ".join(dict.fromkeys(rows))))
                klass, in_rma, rows = m.group(2), False, []
                continue
            if _RMA.search(line):
                if in_rma and rows:
                    out.append((klass, ", ".join(dict.fromkeys(rows))))
                in_rma, rows = True, []
                continue
            r = _ROW.search(line)
            if in_rma and r:
                rows.append(r.group(2))
        if in_rma and rows:
            out.append((klass, ", ".join(dict.fromkeys(rows))))
        return out

    def transport(self, peer: str) -> str:
        """What UCX uses to move data to ``peer``: e.g. ``"tcp/sgl0 (inter-node)"`` or ``"cma/memory
        (intra-node)"``; ``"unknown: ..."`` when the report is off or no transfer to the peer happened yet."""
        if not self.path:
            return f"unknown: UCX's protocol report is off ({self.reason})"
        if peer not in self._marks:
            return "unknown: not connected to this peer yet"
        mine = [t for t in self.tables(self._marks[peer]) if t[0] != "self"]
        if mine:
            klass, transports = mine[0]
            return f"{transports} ({klass})"
        every = {t for t in self.tables() if t[0] != "self"}
        if len(every) == 1:
            klass, transports = next(iter(every))
            return f"{transports} ({klass})"
        if not every:
            return "unknown: no data has moved to this peer yet"
        return "one of: " + "; ".join(f"{t} ({k})" for k, t in sorted(every))
