"""rdma between two simulated hosts (the netns lab with ``isolate=True``: own network, PID and IPC namespaces, so
UCX sees two machines): transfers cross the veth and the transport UCX reports is TCP on the lab interface."""

from __future__ import annotations

import pytest
import rdma_tasks

from sagellm_comm_lab import netns

REASON = netns.unavailable_reason()


@pytest.mark.skipif(REASON is not None, reason=f"network namespaces unavailable: {REASON}")
def test_between_simulated_hosts_the_bytes_travel_over_tcp() -> None:
    with netns.NetnsLab(2, isolate=True) as lab:
        results = lab.run_ranks(rdma_tasks.across_hosts, [0, 1], timeout=180)
    for r in results:
        assert r["transport"] == f"tcp/{netns.HOST_IFNAME} (inter-node)", r
