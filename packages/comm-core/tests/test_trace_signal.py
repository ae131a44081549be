"""The flight recorder on a signal: ``SAGELLM_COMM_TRACE_SIGNAL=USR1`` and ``kill -USR1`` write the trace at once,
even while the main thread is blocked inside a C call (where Python cannot run a signal handler)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

BLOCKED = r"""
import datetime, sys
import torch.distributed as dist
from sagellm_comm.trace import FlightRecorder
rec = FlightRecorder("unit")
rec.rank, rec.world_size = 0, 2
rec.start(None, "all_reduce", (), False)
print("blocked", flush=True)
try:  # a C++ wait that releases the GIL and does not return on a signal, like a collective waiting for a peer
    dist.HashStore().wait(["never"], datetime.timedelta(seconds=float(sys.argv[1])))
except Exception:
    pass
"""


def test_the_signal_writes_the_trace_while_the_main_thread_is_blocked(tmp_path):
    env = {**os.environ, "SAGELLM_COMM_TRACE_SIGNAL": "USR1", "SAGELLM_COMM_TRACE_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", BLOCKED, "20"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "blocked"
        time.sleep(0.3)
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        files = []
        while not files and time.monotonic() < deadline:
            time.sleep(0.05)
            files = list(tmp_path.glob("unit-rank0-*.json"))
        assert files, "no trace written while the main thread was blocked"
        assert proc.poll() is None, "the dump waited for the blocked call"
        time.sleep(0.2)
        dump = json.loads(files[0].read_text())
        assert dump["reason"] == "signal SIGUSR1"
        assert [(e["op"], e["state"]) for e in dump["entries"]] == [("all_reduce", "running")]
    finally:
        proc.kill()
        proc.wait()


def test_a_bad_signal_name_is_logged_not_raised(monkeypatch, caplog):
    from sagellm_comm import trace

    monkeypatch.setenv("SAGELLM_COMM_TRACE_SIGNAL", "NOSUCH")
    monkeypatch.setattr(trace, "_signal_installed", [])
    trace.FlightRecorder("unit")
    assert "not a signal" in caplog.text and trace._signal_installed == []
