"""The core's side channel: one store per rendezvous, a namespace per backend initialization and group, bounded
waits naming the missing rank; handed to every backend as ``rendezvous.store``."""

from __future__ import annotations

import channel_tasks
import pytest
import torch
from core_alone_tasks import LoopbackBackend

from sagellm_comm import CommError
from sagellm_comm.launch import launch
from sagellm_comm.rendezvous import resolve_rendezvous
from sagellm_comm.store import SideChannel, open_side_channel, release_side_channel


def test_two_ranks_exchange_and_broadcast_through_the_channel():
    r0, r1 = launch(channel_tasks.exchange_and_broadcast, 2, timeout=120, env={"SAGELLM_COMM_PLUGINS": "none"})
    for r in (r0, r1):
        assert r["prefix"] == "sagellm_comm/unit/e1/"
        assert r["everyone"] == ["from 0", "from 1"] and r["uid"] == b"\x00\x01id" and r["group"] == ["0", "10"]


def test_a_missing_rank_is_named_when_the_wait_times_out(monkeypatch):
    monkeypatch.setenv("SAGELLM_COMM_PLUGINS", "none")
    r0, r1 = launch(channel_tasks.rank_one_never_publishes, 2, timeout=120)
    assert r1 == "stayed"
    assert r0.startswith("comm_timeout:") and "rank 1 did not post its address" in r0, r0


def test_world_of_one_uses_an_in_process_store_and_epochs_separate_inits():
    rdzv = resolve_rendezvous(world_size=1, rank=0, timeout=5)
    first = open_side_channel(rdzv, "solo")
    second = open_side_channel(rdzv, "solo")
    try:
        assert type(first.base).__name__ == "HashStore"
        assert (first.prefix, second.prefix) == ("sagellm_comm/solo/e1/", "sagellm_comm/solo/e2/")
        first.set("k", "v1")
        assert not second.check(["k"]), "a later initialization never sees keys of an earlier one"
        with pytest.raises(CommError) as info:
            second.get("k", owner="rank 0", what="publish k", timeout=0.2)
        assert "rank 0 did not publish k within 0.2s" in info.value.message
    finally:
        release_side_channel(rdzv)
        release_side_channel(rdzv)


def test_backends_receive_their_channel_and_group_namespaces(monkeypatch):
    monkeypatch.setenv("SAGELLM_COMM_PLUGINS", "none")
    seen: dict[str, object] = {}

    class Recording(LoopbackBackend):
        def _init(self, rendezvous, options):
            seen["store"] = rendezvous.store
            return super()._init(rendezvous, options)

    comm = Recording()
    comm.init_process_group(world_size=1, rank=0)
    try:
        channel = seen["store"]
        assert isinstance(channel, SideChannel) and channel is comm.side_channel
        assert channel.prefix.startswith("sagellm_comm/loopback/e")
        assert comm.group_channel("tp0").prefix == channel.prefix + "groups/tp0/"
        assert comm.all_reduce(torch.ones(2)).tolist() == [1.0, 1.0]
    finally:
        comm.destroy()
    with pytest.raises(CommError):
        comm.side_channel  # noqa: B018 - after destroy there is none


STRANGER_CLIENT = """
import sys, time
from sagellm_comm.errors import CommError
from sagellm_comm.rendezvous import resolve_rendezvous
from sagellm_comm.store import open_side_channel
start = time.monotonic()
try:
    open_side_channel(resolve_rendezvous(2, 1, "127.0.0.1", int(sys.argv[1]), 2.0), "unit")
    print("opened")
except CommError as exc:
    print(f"{time.monotonic() - start:.2f}|{exc.code.value}|{exc.message}")
"""


def test_a_stranger_on_master_port_fails_init_within_the_timeout() -> None:
    """A process that accepts connections on MASTER_PORT but is not a torch store: rank 1 must get COMM_TIMEOUT
    naming the port within its timeout (torch's TCPStore client alone blocks on the handshake indefinitely)."""
    import socket
    import subprocess
    import sys
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: [accepted.append(server.accept()[0]) for _ in range(8)], daemon=True).start()
    port = server.getsockname()[1]
    try:
        proc = subprocess.run(
            [sys.executable, "-c", STRANGER_CLIENT, str(port)], capture_output=True, text=True, timeout=30
        )
    finally:
        server.close()
        for conn in accepted:
            conn.close()
    elapsed, code, message = proc.stdout.strip().splitlines()[-1].split("|", 2)
    assert code == "comm_timeout" and float(elapsed) < 2.0 + 2.0, proc.stdout + proc.stderr
    assert f"port {port}" in message and "another process" in message
