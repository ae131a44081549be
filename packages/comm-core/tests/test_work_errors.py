"""Work.wait never lets an engine's own exception out: torch's RuntimeError from a dead peer or gloo's own
timeout become protocol-coded errors (found by tools/chaos: an async op on gloo raised a bare RuntimeError)."""

from __future__ import annotations

import pytest

from sagellm_comm import CollectiveFailedError, CommTimeoutError, P2PFailedError
from sagellm_comm.work import Work


class _Failing(Work):
    def __init__(self, op: str, exc: Exception) -> None:
        super().__init__(op)
        self.exc = exc

    def is_completed(self) -> bool:
        return True

    def _wait(self, timeout: float | None) -> bool:
        raise self.exc


@pytest.mark.parametrize(
    "op, exc, cls",
    [
        ("all_reduce", RuntimeError("[pair.cc:561] Connection closed by peer"), CollectiveFailedError),
        ("recv", RuntimeError("Connection closed by peer"), P2PFailedError),
        ("send", RuntimeError("Timed out waiting 5000ms for send operation to complete"), CommTimeoutError),
    ],
)
def test_an_engine_error_from_wait_becomes_a_protocol_coded_error(op, exc, cls):
    work = _Failing(op, exc)
    with pytest.raises(cls) as info:
        work.wait()
    assert not info.value.retryable and "destroy the group" in info.value.message and op in info.value.message
    assert info.value.__cause__ is exc
    with pytest.raises(cls):  # and again on the next wait, not "done"
        work.wait()
