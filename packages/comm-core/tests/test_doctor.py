"""``sagellm-comm doctor``: each check against a faked setup (environment, /dev/shm in a tmp dir, fake procfs and
sysfs trees, a patched rlimit, a port this test holds), a check that raises, and the CLI's JSON and exit status."""

from __future__ import annotations

import json
import os
import resource
import socket
import time
from types import SimpleNamespace

import pytest

from sagellm_comm.cli.main import main
from sagellm_comm.doctor import CHECKS, FAIL, INFO, OK, WARN, Context, Finding, exit_code, network, ports, run_checks
from sagellm_comm.doctor import env as env_checks
from sagellm_comm.doctor.limits import check_memlock, check_open_files
from sagellm_comm.doctor.network import Interface, check_hostname, check_socket_ifname
from sagellm_comm.doctor.ports import check_master_addr, check_master_port, port_holders
from sagellm_comm.doctor.shm import check_shm, check_shm_leftovers, group_bytes, parse_size


def _one(findings: list[Finding], level: str, *words: str) -> Finding:
    """The one finding of ``level`` whose text holds every word."""
    hits = [f for f in findings if f.level == level and all(w in f.found + " " + f.fix for w in words)]
    assert len(hits) == 1, f"expected one {level} finding with {words}, got {findings}"
    return hits[0]


def _mountinfo(proc, point, fstype: str) -> None:
    (proc / "self").mkdir(parents=True, exist_ok=True)
    (proc / "self" / "mountinfo").write_text(
        "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/root rw\n"
        f"30 22 0:26 / {point} rw,nosuid,nodev,noexec shared:9 - {fstype} shm rw,size=65536k\n"
    )


def _statvfs(total: int, free: int):
    return lambda path: SimpleNamespace(f_blocks=total // 4096, f_bavail=free // 4096, f_frsize=4096)


# ------------------------------------------------------------------------------------------------------------ shm
def test_shm_missing_dir_fails_with_the_docker_fix_only_for_dev_shm(tmp_path):
    found = check_shm(Context(env={"SAGELLM_COMM_SHM_DIR": str(tmp_path / "nope")}))
    f = _one(found, FAIL, "does not exist", "SAGELLM_COMM_SHM_DIR")
    assert "unset SAGELLM_COMM_SHM_DIR" in f.fix


def test_shm_docker_default_size_warns_and_a_full_one_fails(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    _mountinfo(proc, tmp_path, "tmpfs")
    env = {"SAGELLM_COMM_SHM_DIR": str(tmp_path), "SAGELLM_COMM_SHM_SLOT_BYTES": "512K"}
    need = group_bytes(2, 512 << 10, 256 << 10)
    monkeypatch.setattr(os, "statvfs", _statvfs(64 << 20, 60 << 20))
    found = check_shm(Context(env=env, ranks=2, proc=str(proc)))
    _one(found, OK, "tmpfs", "noexec")
    warn = _one(found, WARN, "Docker's default is 64 MiB", "2-rank")
    assert "--shm-size=1g" in warn.fix and "SIGBUS" in warn.found
    assert not [f for f in found if f.level == FAIL]

    monkeypatch.setattr(os, "statvfs", _statvfs(64 << 20, need - 4096))
    fail = _one(check_shm(Context(env=env, ranks=2, proc=str(proc))), FAIL, "free of 64.0 MiB")
    assert "--shm-size=1g" in fail.fix and "SAGELLM_COMM_SHM_SLOT_BYTES" in fail.fix

    monkeypatch.setattr(os, "statvfs", _statvfs(8 << 30, 8 << 30))
    assert _one(check_shm(Context(env=env, ranks=2, proc=str(proc))), OK, "8.0 GiB free")


def test_shm_on_a_disk_file_system_and_a_bad_slot_size(tmp_path):
    proc = tmp_path / "proc"
    _mountinfo(proc, tmp_path, "ext4")
    env = {"SAGELLM_COMM_SHM_DIR": str(tmp_path), "SAGELLM_COMM_SHM_SLOT_BYTES": "lots"}
    found = check_shm(Context(env=env, proc=str(proc)))
    _one(found, WARN, "on ext4", "not in memory")
    _one(found, FAIL, "SAGELLM_COMM_SHM_SLOT_BYTES='lots' is not a size")


def test_shm_survives_a_missing_proc(tmp_path):
    found = check_shm(Context(env={"SAGELLM_COMM_SHM_DIR": str(tmp_path)}, proc=str(tmp_path / "noproc")))
    _one(found, INFO, "cannot tell which file system")


def test_parse_size_and_the_group_size_match_the_shm_plugin():
    assert parse_size("512K") == 512 << 10 and parse_size("2M") == 2 << 20 and parse_size("4096") == 4096
    with pytest.raises(ValueError):
        parse_size("2X")
    layout = pytest.importorskip("sagellm_comm_cxl_ub.layout")  # absent in the core's own tox env
    for ranks, slot, chunk in ((1, 4096, 128), (2, 512 << 10, 256 << 10), (8, 2 << 20, 256 << 10), (5, 8192, 384)):
        assert group_bytes(ranks, slot, chunk) == layout.Layout(ranks, slot, chunk).size


def test_leftover_regions_old_loose_and_fresh(tmp_path):
    env = {"SAGELLM_COMM_SHM_DIR": str(tmp_path)}
    assert _one(check_shm_leftovers(Context(env=env)), OK, "no sagellm-comm-* files")
    old = tmp_path / "sagellm-comm-deadbeef"
    old.write_bytes(b"x" * 8192)
    os.chmod(old, 0o644)
    long_ago = time.time() - 7200
    os.utime(old, (long_ago, long_ago))
    (tmp_path / "sagellm-comm-fresh").write_bytes(b"")
    os.chmod(tmp_path / "sagellm-comm-fresh", 0o600)
    (tmp_path / "unrelated").write_bytes(b"")
    found = check_shm_leftovers(Context(env=env, stale_after_s=600))
    stale = _one(found, WARN, "1 leftover region file", "sagellm-comm-deadbeef", "2.0 h")
    assert f"find {tmp_path} -maxdepth 1 -name 'sagellm-comm-*'" in stale.fix and "-mmin +10 -delete" in stale.fix
    assert "fresh" not in stale.found
    _one(found, WARN, "other users can open", "sagellm-comm-deadbeef (0644)", "chmod 600")
    _one(found, INFO, "1 region file(s) younger than 10 min")


# --------------------------------------------------------------------------------------------------------- limits
def _fake_rlimit(monkeypatch, which: int, value: tuple[int, int]) -> None:
    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda w: value if w == which else real(w))


def test_open_files_limit(monkeypatch):
    _fake_rlimit(monkeypatch, resource.RLIMIT_NOFILE, (1024, 1048576))
    f = _one(check_open_files(Context()), WARN, "soft 1024, hard 1048576")
    assert f.fix.startswith("ulimit -n 65536")
    _fake_rlimit(monkeypatch, resource.RLIMIT_NOFILE, (256, 1024))
    f = _one(check_open_files(Context()), WARN, "hard limit 1024")
    assert "--ulimit nofile=65536:65536" in f.fix and "LimitNOFILE" in f.fix
    _fake_rlimit(monkeypatch, resource.RLIMIT_NOFILE, (65536, 65536))
    _one(check_open_files(Context()), OK, "soft 65536")


def test_memlock_matters_only_with_rdma_devices(tmp_path, monkeypatch):
    assert _one(check_memlock(Context(sys=str(tmp_path))), OK, "no RDMA devices")
    (tmp_path / "class" / "infiniband" / "mlx5_0").mkdir(parents=True)
    _fake_rlimit(monkeypatch, resource.RLIMIT_MEMLOCK, (65536, 65536))
    f = _one(check_memlock(Context(sys=str(tmp_path))), WARN, "mlx5_0", "64.0 KiB")
    assert "memlock=-1" in f.fix
    _fake_rlimit(monkeypatch, resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    _one(check_memlock(Context(sys=str(tmp_path))), OK, "mlx5_0")


# -------------------------------------------------------------------------------------------------------- network
IFACES = [
    Interface("lo", True, True, "unknown", ("127.0.0.1",)),
    Interface("eth0", True, False, "up", ("10.0.0.2",)),
    Interface("eth1", False, False, "down", ()),
    Interface("ib0", True, False, "up", ()),
]


@pytest.mark.parametrize(
    ("var", "value", "level", "words"),
    [
        ("GLOO_SOCKET_IFNAME", "eth9", FAIL, ("eth9", "does not exist", "eth0")),
        ("GLOO_SOCKET_IFNAME", "eth0,eth1", FAIL, ("eth1 (down)",)),
        ("GLOO_SOCKET_IFNAME", "ib0", FAIL, ("ib0 (no address)",)),
        ("GLOO_SOCKET_IFNAME", "eth0", OK, ("gloo uses eth0 10.0.0.2",)),
        ("NCCL_SOCKET_IFNAME", "eth", OK, ("eth0 10.0.0.2",)),
        ("NCCL_SOCKET_IFNAME", "=eth", FAIL, ("selects no interface",)),
        ("NCCL_SOCKET_IFNAME", "^eth0,lo", FAIL, ("selects no interface",)),
        ("NCCL_SOCKET_IFNAME", "^docker", OK, ("eth0",)),
        ("TP_SOCKET_IFNAME", "wlan0", FAIL, ("wlan0", "does not exist")),
        ("HCCL_SOCKET_IFNAME", "", WARN, ("set but empty",)),
    ],
)
def test_socket_ifname(var, value, level, words):
    _one(check_socket_ifname(Context(env={var: value}, ifaces=IFACES)), level, var, *words)


def test_socket_ifname_loopback_for_a_remote_master_and_none_set():
    found = check_socket_ifname(Context(env={"GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "10.0.0.9"}, ifaces=IFACES))
    _one(found, WARN, "loopback only", "MASTER_ADDR=10.0.0.9")
    _one(check_socket_ifname(Context(env={}, ifaces=IFACES)), OK, "none of GLOO_SOCKET_IFNAME")


def test_this_hosts_interfaces_are_listed():
    found = network.list_interfaces(Context())
    lo = [i for i in found if i.name == "lo"]
    if lo:  # a Linux host always has one
        assert lo[0].up and lo[0].loopback and "127.0.0.1" in lo[0].addresses


def test_hostname(monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "box")
    monkeypatch.setattr(network, "resolve", lambda name, t: (None, "Name or service not known"))
    _one(check_hostname(Context(env={}, ifaces=IFACES)), WARN, "'box' does not resolve", "/etc/hosts")
    monkeypatch.setattr(network, "resolve", lambda name, t: (["127.0.1.1"], ""))
    _one(check_hostname(Context(env={}, ifaces=IFACES)), INFO, "loopback only")
    _one(check_hostname(Context(env={"MASTER_ADDR": "10.0.0.2"}, ifaces=IFACES)), WARN, "loopback only")
    monkeypatch.setattr(network, "resolve", lambda name, t: (["192.0.2.77"], ""))
    _one(check_hostname(Context(env={}, ifaces=IFACES)), WARN, "none of which is an address of this host")
    monkeypatch.setattr(network, "resolve", lambda name, t: (["10.0.0.2"], ""))
    _one(check_hostname(Context(env={}, ifaces=IFACES)), OK, "resolves to 10.0.0.2")


# ---------------------------------------------------------------------------------------------------------- ports
def test_master_addr(monkeypatch):
    monkeypatch.setattr(ports, "resolve", lambda name, t: (None, "Name or service not known"))
    f = _one(check_master_addr(Context(env={"MASTER_ADDR": "rank0.example"})), FAIL, "does not resolve")
    assert "getent hosts rank0.example" in f.fix
    _one(check_master_addr(Context(env={"MASTER_ADDR": "127.0.0.1"})), OK, "loopback")
    _one(check_master_addr(Context(env={})), OK, "MASTER_ADDR unset")
    monkeypatch.setattr(ports, "resolve", lambda name, t: (["192.0.2.200"], ""))  # TEST-NET: never this host
    _one(check_master_addr(Context(env={"MASTER_ADDR": "rank0.example"})), OK, "another host")
    _one(
        check_master_port(Context(env={"MASTER_ADDR": "rank0.example", "MASTER_PORT": "29500"})),
        INFO,
        "not tested here",
    )


@pytest.fixture
def stranger():
    """A listening socket this test holds: the stranger on MASTER_PORT."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


def test_master_port_held_by_a_stranger_names_it(stranger):
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(stranger)}
    f = _one(check_master_port(Context(env=env)), FAIL, "port taken on 127.0.0.1")
    assert f"pid {os.getpid()}" in f.found and "LISTEN" in f.found
    assert f"kill {os.getpid()}" in f.fix and f"ss -ltnp 'sport = :{stranger}'" in f.fix
    assert [h.pid for h in port_holders(stranger) if h.state == "LISTEN"] == [os.getpid()]
    assert exit_code(run_checks(Context(env=env), only=["master-port"])) == 1


def test_default_port_held_only_warns_and_a_free_port_is_ok(stranger, monkeypatch):
    monkeypatch.setattr(ports, "DEFAULT_MASTER_PORT", stranger)
    _one(check_master_port(Context(env={})), WARN, f"MASTER_PORT unset (default {stranger})", "port taken")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    _one(check_master_port(Context(env={"MASTER_PORT": str(free)})), OK, "free on 127.0.0.1")


def test_master_port_invalid_and_in_the_ephemeral_range(tmp_path):
    _one(check_master_port(Context(env={"MASTER_PORT": "http"})), FAIL, "'http' is not a port")
    _one(check_master_port(Context(env={"MASTER_PORT": "70000"})), FAIL, "is not a port")
    ipv4 = tmp_path / "sys" / "net" / "ipv4"
    ipv4.mkdir(parents=True)
    (ipv4 / "ip_local_port_range").write_text("32768\t60999\n")
    env = {"MASTER_ADDR": "192.0.2.200", "MASTER_PORT": "40000"}  # another host: no bind test, just the range
    f = _one(check_master_port(Context(env=env, proc=str(tmp_path))), WARN, "ephemeral port range 32768-60999")
    assert "ip_local_reserved_ports=40000" in f.fix
    (ipv4 / "ip_local_reserved_ports").write_text("8080,39000-41000\n")
    assert not [f for f in check_master_port(Context(env=env, proc=str(tmp_path))) if "ephemeral" in f.found]


# ------------------------------------------------------------------------------------------------------------ env
def test_torch_env_hang_and_confusion_settings(monkeypatch):
    monkeypatch.setattr(env_checks, "_cores", lambda: 8)
    env = {
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "0",
        "NCCL_BLOCKING_WAIT": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "NCCL_IB_DISABLE": "1",
        "LOCAL_WORLD_SIZE": "4",
    }
    found = env_checks.check_torch_env(Context(env=env))
    _one(found, WARN, "TORCH_NCCL_ASYNC_ERROR_HANDLING=0", "hangs forever")
    _one(found, WARN, "NCCL_BLOCKING_WAIT='1' is the deprecated name", "export TORCH_NCCL_BLOCKING_WAIT=1")
    _one(found, WARN, "CUDA_VISIBLE_DEVICES is set but empty")
    _one(found, INFO, "NCCL_IB_DISABLE=1")
    _one(found, INFO, "NCCL_DEBUG is unset")
    f = _one(found, WARN, "OMP_NUM_THREADS is unset with 4 ranks", "32 threads on 8 cores")
    assert "OMP_NUM_THREADS=2" in f.fix
    quiet = env_checks.check_torch_env(Context(env={"NCCL_DEBUG": "WARN", "OMP_NUM_THREADS": "1"}))
    assert [f.level for f in quiet] == [OK]


def test_sagellm_env_values(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {
        "SAGELLM_COMM_TIMEOUT_S": "soon",
        "SAGELLM_COMM_DEBUG": "verbose",
        "SAGELLM_COMM_TRACE_ENTRIES": "many",
        "SAGELLM_COMM_TRACE_DIR": str(blocker / "traces"),
        "SAGELLM_COMM_TIMEOUT": "30",
    }
    found = env_checks.check_sagellm_env(Context(env=env))
    _one(found, FAIL, "SAGELLM_COMM_TIMEOUT_S='soon'")
    _one(found, WARN, "SAGELLM_COMM_DEBUG='verbose'", "debug mode stays off")
    _one(found, FAIL, "SAGELLM_COMM_TRACE_ENTRIES='many'")
    _one(found, WARN, "traces cannot be written", "a-file")
    _one(
        found,
        INFO,
        "SAGELLM_COMM_TIMEOUT is set but no sagellm-comm package reads it",
        "did you mean SAGELLM_COMM_TIMEOUT_S",
    )
    _one(found, INFO, "SAGELLM_COMM_JOB_TOKEN is unset")
    env = {"SAGELLM_COMM_TIMEOUT_S": "2", "SAGELLM_COMM_TRACE_DIR": str(tmp_path / "new" / "dir")}
    found = env_checks.check_sagellm_env(Context(env=env))
    _one(found, WARN, "SAGELLM_COMM_TIMEOUT_S=2", "spuriously")
    _one(found, OK, "traces go to", "new/dir")


# ------------------------------------------------------------------------------------------------------- backends
def test_backends_none_available_fails_and_failed_plugins_warn(monkeypatch):
    from sagellm_comm import registry

    record = SimpleNamespace(
        name="widget", distribution="isagellm-comm-widget", status="failed", error="ImportError: libwidget.so.1"
    )
    monkeypatch.setattr(registry, "plugin_manager", lambda: SimpleNamespace(records={"widget": record}))
    down = SimpleNamespace(
        name="widget", available=False, reason="no widget card", devices=("widget",), plugin="widget"
    )
    monkeypatch.setattr(registry, "list_comm_backends", lambda: [down])
    found = run_checks(Context(), only=["backends"])
    _one(found, FAIL, "no registered backend can run here", "isagellm-comm[gloo]")
    f = _one(found, WARN, "plugin 'widget' (isagellm-comm-widget) failed to load", "libwidget.so.1")
    assert "SAGELLM_COMM_DISABLE_PLUGINS=widget" in f.fix
    _one(found, INFO, "backend widget", "no widget card")
    up = SimpleNamespace(name="loop", available=True, reason="ok", devices=("cpu",), plugin="in-process")
    monkeypatch.setattr(registry, "list_comm_backends", lambda: [up, down])
    _one(run_checks(Context(), only=["backends"]), OK, "available backends: loop (cpu)")


# ---------------------------------------------------------------------------------------------- runner and the CLI
def test_a_check_that_raises_becomes_a_finding_and_the_rest_run(monkeypatch):
    def boom(ctx):
        raise RuntimeError("no such thing")

    monkeypatch.setitem(CHECKS, "boom", (boom, "raises"))
    found = run_checks(Context(env={}), only=["boom", "open-files"])
    _one(found, WARN, "could not run: RuntimeError: no such thing")
    assert [f.check for f in found] == ["boom", "open-files"]


def test_every_check_runs_without_proc_or_sys(tmp_path):
    ctx = Context(env={"SAGELLM_COMM_SHM_DIR": str(tmp_path)}, proc=str(tmp_path / "p"), sys=str(tmp_path / "s"))
    found = run_checks(ctx, only=[n for n in CHECKS if n != "backends"])
    assert not [f for f in found if "could not run" in f.found], found
    assert {f.check for f in found} == set(CHECKS) - {"backends"}


def test_cli_json_exit_status_and_the_token_is_never_printed(monkeypatch, capsys):
    monkeypatch.setenv("MASTER_PORT", "not-a-port")
    monkeypatch.setenv("SAGELLM_COMM_JOB_TOKEN", "s3cr3t-t0ken-value")
    rc = main(["doctor", "--json"])
    out = capsys.readouterr().out
    assert "s3cr3t-t0ken-value" not in out
    data = json.loads(out)
    assert rc == 1 == data["exit_code"] and data["counts"][FAIL] >= 1
    checks = {f["check"] for f in data["findings"]}
    assert checks == set(CHECKS)
    port = [f for f in data["findings"] if f["check"] == "master-port"]
    assert port == [{"check": "master-port", "level": FAIL, "found": port[0]["found"], "fix": port[0]["fix"]}]
    assert "'not-a-port' is not a port" in port[0]["found"]
    token = [f for f in data["findings"] if "JOB_TOKEN" in f["found"]]
    assert [f["level"] for f in token] == [OK] and "value not shown" in token[0]["found"]


def test_cli_table_and_only_some_checks(monkeypatch, capsys):
    _fake_rlimit(monkeypatch, resource.RLIMIT_NOFILE, (1024, 1048576))
    assert main(["doctor", "--check", "open-files", "--check", "torch-env"]) == 0  # warnings do not fail
    out = capsys.readouterr().out
    assert "open-files" in out and "ulimit -n 65536" in out and "master-port" not in out
    assert "0 fail," in out
    assert main(["doctor", "--check", "open-files", "-q"]) == 0
    assert "soft 1024" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["doctor", "--check", "nonsense"])
    assert info.value.code == 2


def test_every_variable_the_packages_read_is_known_to_the_typo_check():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "packages"
    used = {
        m
        for p in root.glob("comm-*/src/**/*.py")
        for m in re.findall(r"SAGELLM_COMM_[A-Z0-9_]*[A-Z0-9]", p.read_text())
    }
    assert used, "no package sources found"
    # not environment variables: the attribute a plugin's entry module declares its plugin API in
    from sagellm_comm.plugins.manager import API_ATTRIBUTE

    missing = sorted(used - env_checks.KNOWN_SAGELLM_VARS - {API_ATTRIBUTE})
    assert not missing, f"add to sagellm_comm.doctor.env.KNOWN_SAGELLM_VARS: {missing}"
