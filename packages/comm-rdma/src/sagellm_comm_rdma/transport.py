"""Which transport UCX chose for each peer, read from UCX's own protocol report.

UCX picks a transport per endpoint: verbs (``rc_mlx5/mlx5_0:1``...) where an RDMA device reaches the peer, shared
memory (``cma/memory``, ``sysv/memory``, ``posix/memory``) when the peer is on the same machine, TCP otherwise. With
``UCX_PROTO_INFO=y`` it prints, the first time an endpoint configuration uses a protocol, a table such as::

    | r0 inter-node cfg#1                                      |
    | remote memory write by ucp_put* from host memory to host |
    | 0..inf | zero-copy   | tcp/sgl0                          |

``TransportLog`` turns those tables into a per-peer answer. ``enable()`` must run before the process's first NIXL
agent (UCX reads its environment once); it sets ``UCX_PROTO_INFO=y`` and sends UCX's log to a file of its own
(``UCX_LOG_FILE``), unless the user already set either (then the report is ``unknown``) or
``SAGELLM_COMM_RDMA_TRANSPORT_REPORT=0``. UCX's warnings then go to that file as well (``TransportLog.path``).

A peer's transport is the remote-memory (put/get) table that first appears after the engine connected to it; peers
that share an endpoint configuration with an earlier one print no new table and get that configuration's answer.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading

__all__ = ["TransportLog"]

_TITLE = re.compile(r"\|\s*(\S+)\s+(intra-node|inter-node|self)\s+cfg#(\d+)\s*\|")
_RMA = re.compile(r"\|\s*remote memory (write|read) by")
_ROW = re.compile(r"\|\s*(\d+\.\.inf|\d+\.\.\d+|\d+)\s*\|[^|]*\|\s*([^|]*?)\s*\|\s*$")
_ENV_SWITCH = "SAGELLM_COMM_RDMA_TRANSPORT_REPORT"


class TransportLog:
    """UCX's protocol report for this process (one per process: UCX's log file is process-wide)."""

    _instance: TransportLog | None = None
    _lock = threading.Lock()

    def __init__(self, path: str | None, reason: str = "") -> None:
        self.path = path
        self.reason = reason  # why there is no report (path None)
        self._marks: dict[str, int] = {}  # peer key -> log size when the engine connected to it

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
        path = os.path.join(tempfile.gettempdir(), f"sagellm-comm-ucx-{os.getpid()}.log")
        os.environ["UCX_PROTO_INFO"] = "y"
        os.environ["UCX_LOG_FILE"] = path
        return cls(path)

    def mark(self, peer: str) -> None:
        """Remember where the log ends now: tables after this point may belong to ``peer``."""
        self._marks.setdefault(peer, self._size())

    def _size(self) -> int:
        try:
            return os.path.getsize(self.path) if self.path else 0
        except OSError:
            return 0

    def tables(self, start: int = 0) -> list[tuple[str, str]]:
        """``(endpoint class, transports)`` of every remote-memory table from byte ``start`` on, in order."""
        if not self.path:
            return []
        try:
            with open(self.path, errors="replace") as f:
                f.seek(start)
                text = f.read()
        except OSError:
            return []
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
