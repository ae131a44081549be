"""Safe rendezvous: the store listens on loopback unless an address is configured; a process of another job (no
token, another token) or a stranger sending garbage to the port is refused and the job goes on; binding a busy
port is retried only briefly."""

from __future__ import annotations

import errno
import socket
import time

import pytest
import security_tasks

from sagellm_comm.doctor.ports import port_holders
from sagellm_comm.launch import RankPool
from sagellm_comm.listen import bind_address, listen_socket
from sagellm_comm.retry import retry


def test_a_stray_process_of_another_job_is_refused_and_the_job_goes_on():
    with RankPool(2, env={"SAGELLM_COMM_PLUGINS": "none"}) as pool:
        r0, r1 = pool.run(security_tasks.job_survives_strangers, timeout=240)
    for key, why in (("no_token", "this process has none"), ("other_token", "another SAGELLM_COMM_JOB_TOKEN")):
        line = r0["seen"][key]
        assert line != "JOINED", key
        elapsed, code, message = line.split("|", 2)
        assert code == "comm_group_invalid" and "belongs to another job" in message and why in message, line
        assert float(elapsed) < 20, line  # refused at once, not by a timeout
    assert r0["rounds"] == r1["rounds"] == [[f"sagellm_comm/unit/e{n}/|{r}" for r in (0, 1)] for n in (1, 2)]


@pytest.mark.parametrize("configured, expected", [(None, ["127.0.0.1"]), ("0.0.0.0", ["0.0.0.0", "::"])])
def test_the_store_listens_on_loopback_by_default_and_where_configured(monkeypatch, configured, expected):
    from sagellm_comm.launch.ports import free_port
    from sagellm_comm.rendezvous import resolve_rendezvous
    from sagellm_comm.store import _open_base

    if configured is None:
        monkeypatch.delenv("SAGELLM_COMM_BIND_ADDR", raising=False)
    else:
        monkeypatch.setenv("SAGELLM_COMM_BIND_ADDR", configured)
    rdzv = resolve_rendezvous(world_size=2, rank=0, master_addr="127.0.0.1", master_port=free_port(), timeout=5)
    shared = _open_base(rdzv, 1)  # rank 0 hosts the store; nobody needs to join for it to listen
    try:
        found = [h.local for h in port_holders(rdzv.master_port) if h.state == "LISTEN"]
        assert found in ([f"{addr}:{rdzv.master_port}"] for addr in expected), found
    finally:
        del shared


def test_bind_address_rules(monkeypatch):
    monkeypatch.delenv("SAGELLM_COMM_BIND_ADDR", raising=False)
    assert bind_address("127.0.0.1")[0] == "127.0.0.1"
    assert bind_address("localhost")[0] == "127.0.0.1"
    assert bind_address("::1")[0] == "::1"
    assert bind_address("127.0.1.1")[0] == "127.0.0.1"  # any loopback address: loopback only
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(0, 0, 0, "", ("127.0.1.1", 0))])
    assert bind_address("myhost")[0] == ""  # a host name mapped to loopback here: every interface, as torch
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(0, 0, 0, "", ("10.1.2.3", 0))])
    assert bind_address("node0")[0] == "10.1.2.3"
    monkeypatch.setenv("SAGELLM_COMM_BIND_ADDR", "0.0.0.0")
    assert bind_address("127.0.0.1")[0] == ""


def test_binding_a_busy_port_is_retried_briefly_then_reported():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        start = time.monotonic()
        with pytest.raises(OSError) as info:
            listen_socket("127.0.0.1", port, retry_s=0.5)
        assert info.value.errno == errno.EADDRINUSE
        assert 0.4 < time.monotonic() - start < 3.0
    finally:
        holder.close()
    listen_socket("127.0.0.1", port, retry_s=0.5).close()  # free again: binds at once


def test_retry_gives_up_on_errors_that_are_not_retryable_at_once():
    calls = []

    def step():
        calls.append(1)
        raise ValueError("no")

    with pytest.raises(ValueError):
        retry(step, retry_on=lambda e: isinstance(e, OSError), deadline_s=5)
    assert len(calls) == 1
    attempts = iter([OSError("busy"), OSError("busy"), None])

    def flaky():
        exc = next(attempts)
        if exc:
            raise exc
        return "ok"

    assert retry(flaky, retry_on=lambda e: isinstance(e, OSError), deadline_s=5, first_wait_s=0.01) == "ok"
