"""The flight recorder: the last operations of each backend instance, to see which rank was where when a job hung.

Every call through ``CommBackend`` records:
- its number on its group, the group, the op;
- its signature (dtypes, sizes, roots, reduce op);
- whether it was async;
- when it started and ended, and its state: ``running``, then ``done``, ``failed`` or ``timeout``; an async op
  stays ``submitted`` until a ``wait`` returns.

The buffer is a bounded ring: ``SAGELLM_COMM_TRACE_ENTRIES``, default 512; 0 turns recording off.

It is written to a JSON file when a call times out, on demand with ``backend.dump_trace()``, or when the process
gets the signal named by ``SAGELLM_COMM_TRACE_SIGNAL`` (e.g. ``USR1``: ``kill -USR1 <pid>`` on a rank that seems
stuck writes every live backend's recorder; the handler is installed by the first backend created on the main
thread, and chains to a handler that was there before). The file goes to
``SAGELLM_COMM_TRACE_DIR`` (default: ``<tmp>/sagellm-comm-trace``) as ``<backend>-rank<r>-<pid>.json``, and the
path is logged. ``sagellm-comm trace merge FILES...`` lines the ranks' files up by (group, call number) and marks
the first call where they part: the call a rank never reached, or one that differs in signature.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import socket
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from sagellm_comm.debug import describe, summarize
from sagellm_comm.errors import InvalidArgumentError

__all__ = ["TRACE_DIR_ENV", "TRACE_ENTRIES_ENV", "TRACE_SIGNAL_ENV", "FlightRecorder", "merge_traces"]

TRACE_ENTRIES_ENV = "SAGELLM_COMM_TRACE_ENTRIES"
TRACE_DIR_ENV = "SAGELLM_COMM_TRACE_DIR"
TRACE_SIGNAL_ENV = "SAGELLM_COMM_TRACE_SIGNAL"
log = logging.getLogger(__name__)

_live: weakref.WeakSet[FlightRecorder] = weakref.WeakSet()
_signal_installed: list[int] = []


def _signal_number(name: str) -> int:
    text = name.strip().upper()
    if text.isdigit():
        return int(text)
    return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])


def _dump_live(reason: str) -> None:
    for recorder in list(_live):
        if recorder.enabled:
            try:
                recorder.dump(reason=reason)
            except OSError as exc:
                log.error("sagellm-comm flight recorder: cannot write on %s: %s", reason, exc)


def _install_signal_dump() -> None:
    """Dump every live recorder on ``SAGELLM_COMM_TRACE_SIGNAL`` (once per process, from the main thread)."""
    name = os.environ.get(TRACE_SIGNAL_ENV, "").strip()
    if not name or _signal_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        signum = _signal_number(name)
        previous = signal.getsignal(signum)
    except (KeyError, ValueError) as exc:
        log.error("%s=%r is not a signal (%s): no dump on signal", TRACE_SIGNAL_ENV, name, exc)
        return

    def handler(sig: int, frame: Any) -> None:
        if not watched:  # no watcher thread: write from a thread now (the main thread may hold what a dump needs)
            threading.Thread(target=_dump_live, args=(f"signal {signal.Signals(sig).name}",), daemon=True).start()
        if callable(previous):
            previous(sig, frame)

    signal.signal(signum, handler)
    watched = _watch_wakeup_fd(signum)
    _signal_installed.append(signum)


def _watch_wakeup_fd(signum: int) -> bool:
    """Dump from a thread woken through ``signal.set_wakeup_fd``: Python runs signal handlers on the main thread
    only, and only between bytecodes, so a rank blocked inside a collective (a C call) would otherwise write
    nothing until the call returns. Not possible when something else (an asyncio loop) owns the wakeup fd; then
    the dump waits for the main thread."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        old = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:
        old = None
    if old != -1:
        if old is not None:
            signal.set_wakeup_fd(old)
        os.close(read_fd)
        os.close(write_fd)
        return False

    def watch() -> None:
        while True:
            for number in os.read(read_fd, 64):
                if number == signum:
                    _dump_live(f"signal {signal.Signals(signum).name}")

    threading.Thread(target=watch, name="sagellm-comm-trace-signal", daemon=True).start()
    return True


class FlightRecorder:
    def __init__(self, backend: str, entries: int | None = None) -> None:
        if entries is None:
            raw = os.environ.get(TRACE_ENTRIES_ENV, "512").strip() or "0"
            try:
                entries = int(raw)
            except ValueError:
                raise InvalidArgumentError(
                    f"{TRACE_ENTRIES_ENV}={raw!r} is not an integer (how many operations the "
                    "flight recorder keeps; 0 turns it off)"
                ) from None
        self.backend = backend
        self.enabled = entries > 0
        self.entries: collections.deque[list[Any]] = collections.deque(maxlen=max(entries, 1))
        self._seqs: dict[str, int] = {}
        self.rank, self.world_size = -1, 0
        _live.add(self)
        _install_signal_dump()

    # an entry is a list, filled cheaply on the call's path and turned into a dict only when written:
    # [group, seq, op, light args, async, start, end, state, error]
    def start(self, group: Any, op: str, args: tuple[Any, ...], async_op: bool) -> list[Any] | None:
        if not self.enabled:
            return None
        gid = getattr(group, "group_id", "?")
        seq = self._seqs[gid] = self._seqs.get(gid, 0) + 1
        entry = [gid, seq, op, summarize(args), async_op, time.time(), None, "running", ""]
        self.entries.append(entry)
        return entry

    @staticmethod
    def finish(entry: list[Any] | None, state: str, error: str = "") -> None:
        if entry is None:
            return
        entry[7], entry[6] = state, time.time()
        if error:
            entry[8] = error[:500]

    @staticmethod
    def as_dict(entry: list[Any]) -> dict[str, Any]:
        gid, seq, op, summary, async_op, start, end, state, error = entry
        out = {
            "group": gid,
            "seq": seq,
            "op": op,
            "signature": describe(op, summary),
            "async": async_op,
            "start": start,
            "end": end,
            "state": state,
        }
        if error:
            out["error"] = error
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "rank": self.rank,
            "world_size": self.world_size,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "written": time.time(),
            "entries": [self.as_dict(e) for e in list(self.entries)],
        }

    def dump(self, path: str | os.PathLike[str] | None = None, reason: str = "on demand") -> Path:
        """Write the buffer as JSON; return the path (also logged)."""
        if path is None:
            folder = Path(os.environ.get(TRACE_DIR_ENV) or Path(tempfile.gettempdir()) / "sagellm-comm-trace")
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{self.backend}-rank{self.rank}-{os.getpid()}.json"
        target = Path(path)
        target.write_text(json.dumps({**self.snapshot(), "reason": reason}, indent=1))
        log.warning("sagellm-comm flight recorder (%s): %d operations written to %s", reason, len(self.entries), target)
        return target

    def reset(self) -> None:
        self.entries.clear()
        self._seqs = {}


def check_dump(dump: Any, where: str = "trace") -> None:
    """Raise ``INVALID_ARGUMENT`` unless ``dump`` is a flight-recorder dump: an int ``rank`` and a list of
    ``entries`` with ``group``, ``seq``, ``signature`` and ``state``."""
    if not isinstance(dump, dict):
        raise InvalidArgumentError(f"{where} is not a flight-recorder dump (a JSON object), got {type(dump).__name__}")
    rank, entries = dump.get("rank"), dump.get("entries")
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise InvalidArgumentError(f"{where} is not a flight-recorder dump: 'rank' must be an int, got {rank!r}")
    if not isinstance(entries, list):
        raise InvalidArgumentError(f"{where} (rank {rank}) is not a flight-recorder dump: 'entries' must be a list")
    kinds = {"group": str, "seq": int, "signature": str, "state": str}
    for i, e in enumerate(entries):
        bad = [
            k
            for k, kind in kinds.items()
            if not isinstance(e, dict) or not isinstance(e.get(k), kind) or isinstance(e.get(k), bool)
        ]
        if bad:
            raise InvalidArgumentError(f"{where} (rank {rank}): entry {i} has no valid {', '.join(bad)}")


def merge_traces(dumps: list[dict[str, Any]]) -> tuple[list[int], list[dict[str, Any]]]:
    """Rows by (group, call number), one cell per rank: ``(ranks, rows)``; each row says whether the ranks agree.
    A value that is not a dump raises ``INVALID_ARGUMENT``."""
    for i, d in enumerate(dumps):
        check_dump(d, f"trace #{i + 1}")
    ranks = sorted(d["rank"] for d in dumps)
    cells: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}
    for d in dumps:
        for e in d["entries"]:
            cells.setdefault((e["group"], e["seq"]), {})[d["rank"]] = e
    spans: dict[tuple[int, str], tuple[int, int]] = {}  # (rank, group) -> (first, last) call number recorded
    for d in dumps:
        for e in d["entries"]:
            lo, hi = spans.get((d["rank"], e["group"]), (e["seq"], e["seq"]))
            spans[(d["rank"], e["group"])] = (min(lo, e["seq"]), max(hi, e["seq"]))
    rows = []
    for (group, seq), by_rank in sorted(cells.items(), key=lambda kv: (kv[0][0] != "world", kv[0][0], kv[0][1])):
        sigs = {e["signature"] for e in by_rank.values()}
        states = {e["state"] for e in by_rank.values()}
        # a rank that recorded this group but stopped before this call never reached it (older calls that fell off
        # a rank's ring are unknown, not missing)
        missing = [r for r in ranks if r not in by_rank and (r, group) in spans and spans[(r, group)][1] < seq]
        if len(sigs) > 1:
            verdict = "MISMATCH"
        elif missing:
            verdict = f"NOT REACHED by rank {', '.join(map(str, missing))}"
        elif states - {"done", "submitted"}:
            verdict = "/".join(sorted(states)).upper()
        else:
            verdict = "ok"
        rows.append({"group": group, "seq": seq, "cells": by_rank, "verdict": verdict})
    return ranks, rows
