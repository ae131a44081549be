"""The core with no plugin installed (tox env ``core``), and with plugins hidden in the full environment.

Proves the contract stands alone: it imports, reports that nothing is installed with a useful hint, and runs an
in-process backend registered with ``register_comm_backend`` through the launcher and the conformance kit.
"""

from __future__ import annotations

import os
import subprocess
import sys

import core_alone_tasks as tasks
import pytest
import torch
from sagellm_protocol.errors import ErrorCode

from sagellm_comm import CommError, get_comm_backend, list_comm_backends, register_comm_backend
from sagellm_comm.hints import meta_extras
from sagellm_comm.launch import RankPool, launch
from sagellm_comm.registry import reload_plugins

NO_PLUGINS = {**os.environ, "SAGELLM_COMM_PLUGINS": "none"}


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=NO_PLUGINS, capture_output=True, text=True, timeout=120)


def test_core_imports_and_reports_no_backend() -> None:
    proc = _run(
        "import sagellm_comm as c\n"
        "assert [s for s in c.list_comm_backends() if s.available] == [], c.list_comm_backends()\n"
        "for name in ('gloo', 'auto'):\n"
        "    try:\n"
        "        c.get_comm_backend(name)\n"
        "    except c.BackendNotSupportedError as e:\n"
        "        print(name, e.code.value, e.message)\n"
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("gloo comm_backend_not_supported")
    assert lines[1].startswith("auto comm_backend_not_supported") and "no installed backend handles 'cpu'" in lines[1]
    if meta_extras()[0] is not None:  # the workspace: isagellm-comm (the extras' owner) is installed
        assert "pip install 'isagellm-comm[gloo]'" in lines[0]
        assert "pip install 'isagellm-comm[gloo]'" in lines[1], "torch serves cpu with gloo, and that extra exists"
    else:  # the core alone (tox env core): nothing to name an extra of
        assert "`pip install isagellm-comm` gives the CPU backends" in lines[0]
        assert "`pip install isagellm-comm` gives the CPU backends" in lines[1]


@pytest.fixture
def loopback_registered(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SAGELLM_COMM_PLUGINS", "none")
    reload_plugins()
    register_comm_backend("loopback", tasks.LoopbackBackend, priority=1, description="world of one, in-process")
    yield
    reload_plugins()


def test_in_process_backend_registration(loopback_registered: None) -> None:
    names = [s.name for s in list_comm_backends()]
    assert names == ["loopback"]
    comm = get_comm_backend("auto")
    assert comm.name == "loopback"
    comm.init_process_group(world_size=1, rank=0)
    t = torch.arange(5.0)
    assert comm.all_reduce(t, op="sum") is t
    with pytest.raises(CommError) as info:
        comm.broadcast(t, 0)
    assert info.value.code is ErrorCode.COMM_BACKEND_NOT_SUPPORTED
    assert "loopback" in info.value.message and "broadcast" in info.value.message
    comm.destroy()


def test_launcher_runs_with_core_only() -> None:
    assert launch(tasks.rank_and_env, 2, timeout=120, env={"SAGELLM_COMM_PLUGINS": "none"}) == [(0, "2"), (1, "2")]


def test_a_rank_destroys_every_live_backend_at_shutdown(tmp_path) -> None:
    """Two initialized instances of one name in a rank: both are destroyed when the pool closes (active_backends
    keeps only the newest of a name; an instance left out would leak what only its destroy releases)."""
    with RankPool(1, env={"SAGELLM_COMM_PLUGINS": "none"}) as pool:
        (expected,) = pool.run(tasks.two_live_loopbacks, str(tmp_path), timeout=120)
    assert len(expected) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)


def test_live_backends_keeps_every_instance_of_a_name() -> None:
    from sagellm_comm.backend import active_backends, live_backends

    first, second = tasks.LoopbackBackend(), tasks.LoopbackBackend()
    first.init_process_group(world_size=1, rank=0)
    second.init_process_group(world_size=1, rank=0)
    try:
        assert [b for b in live_backends() if b in (first, second)] == [first, second]
        assert active_backends()["loopback"] is second
        second.destroy()
        assert active_backends()["loopback"] is first  # the older instance is still initialized
        assert first in live_backends() and second not in live_backends()
    finally:
        first.destroy()
        second.destroy()
    assert "loopback" not in active_backends()
    assert not [b for b in live_backends() if b in (first, second)]
