"""Reading UCX's protocol report: per-peer transports from the remote-memory tables, UCX warnings passed on to the
logger, and no file left on disk. On a recorded excerpt of UCX 1.x output (``UCX_PROTO_INFO=y``)."""

from __future__ import annotations

import logging
from pathlib import Path

from sagellm_comm_rdma.transport import TransportLog

SELF = """\
[1796016643.51] [vm:31785:0]   +--------+-------------+-----------------------------------+
[1796016643.51] [vm:31785:0]   | r0 self cfg#0                                            |
[1796016643.51] [vm:31785:0]   | remote memory write by ucp_put* from host memory to host |
[1796016643.51] [vm:31785:0]   +--------+-------------+-----------------------------------+
[1796016643.51] [vm:31785:0]   | Range  | Description |              Config               |
[1796016643.51] [vm:31785:0]   +--------+-------------+-----------------------------------+
[1796016643.51] [vm:31785:0]   | 0..inf | zero-copy   | cma/memory                        |
[1796016643.51] [vm:31785:0]   +--------+-------------+-----------------------------------+
"""
PEER = """\
[1796016948.96] [vm:2    :0]   | r0 inter-node cfg#1                                      |
[1796016948.96] [vm:2    :0]   | remote memory write by ucp_put* from host memory to host |
[1796016948.96] [vm:2    :0]   +--------+-------------+-----------------------------------+
[1796016948.96] [vm:2    :0]   | Range  | Description |              Config               |
[1796016948.96] [vm:2    :0]   +--------+-------------+-----------------------------------+
[1796016948.96] [vm:2    :0]   | 0..inf | zero-copy   | tcp/sgl0                          |
[1796016948.96] [vm:2    :0]   +--------+-------------+-----------------------------------+
[1796016948.97] [vm:2    :0]   | r0 inter-node cfg#1                             |
[1796016948.97] [vm:2    :0]   | active message by ucp_am_send* from host memory |
[1796016948.97] [vm:2    :0]   |          0 | short              | tcp/sgl0    |
"""
WARN = "[1796017467.80] [vm:6159 :0]   sock.c:355  UCX  ERROR   connect(fd=41, dest_addr=10.0.0.2:1) failed: refused\n"


def test_transports_per_peer_and_warnings_relayed(tmp_path: Path, caplog) -> None:
    path = tmp_path / "ucx.log"
    path.write_text(SELF)
    log = TransportLog(str(path))
    log.attach()
    assert not path.exists(), "the log stays on disk"
    assert log.transport("a") == "unknown: not connected to this peer yet"
    log.mark("a")
    assert log.transport("a") == "unknown: no data has moved to this peer yet"  # a self table is not a peer's
    with _writer(log) as w:
        w.write((PEER + WARN).encode())
    with caplog.at_level(logging.WARNING, logger="sagellm_comm.rdma.ucx"):
        assert log.transport("a") == "tcp/sgl0 (inter-node)"
        log.relay_warnings()  # nothing new: each warning is passed on once
    assert [r.getMessage() for r in caplog.records] == [
        "UCX: ERROR   connect(fd=41, dest_addr=10.0.0.2:1) failed: refused"
    ]
    log.mark("b")  # connected later, shares the configuration: gets its answer
    assert log.transport("b") == "tcp/sgl0 (inter-node)"


def test_report_off_when_the_user_owns_the_ucx_log(monkeypatch) -> None:
    monkeypatch.setenv("UCX_LOG_FILE", "/tmp/mine.log")
    log = TransportLog._setup()
    assert log.path is None
    assert log.transport("x").startswith("unknown: UCX's protocol report is off")


def _writer(log: TransportLog):
    """Append to the unlinked log through /proc, as UCX does through its own open file."""
    return open(f"/proc/self/fd/{log._file.fileno()}", "ab")
