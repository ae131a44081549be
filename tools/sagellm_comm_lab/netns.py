"""Simulated hosts for multi-node tests: Linux network namespaces joined by veth pairs through a bridge.

``NetnsLab(n_hosts)`` builds, for each simulated host, a network namespace with its own UTS hostname and one
interface (``sgl0``) on a private subnet (``10.77.0.0/24`` by default; addresses exist only inside the lab), all
plugged into a Linux bridge that lives in a namespace of its own. Nothing is added to the machine's own network.
A link can be shaped with ``tc ... tbf`` (both directions) to make it slower than the host's loopback.

``isolate=True`` also gives each host its own PID and System V IPC namespaces. Without them, processes on different
simulated hosts still share one kernel's process and IPC tables, and libraries that look for a same-machine path
find one: UCX calls such peers "intra-node" and moves data with cross-memory attach (``cma``) instead of the veth.
With them, UCX sees separate machines and uses TCP over the lab's links, as between real hosts. (Stack dumps of a
stuck rank are not collected in that mode: the rank runs under ``nsenter``, which does not forward the signal.)

Each host is kept alive by a small holder process started as ``ip netns exec NS unshare --uts python ...``: it sets
the hostname and owns the host's UTS and mount namespaces (the mount namespace shows the host's own
``/sys/class/net``). Commands run inside a host through ``nsenter --target HOLDER --uts --net --mount``.

``lab.run_ranks(fn, placement)`` starts one process per rank inside its host with the torchrun environment
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR = the first rank's host address, MASTER_PORT, GLOO_SOCKET_IFNAME) and
returns ``fn``'s results in rank order, with the same failure and deadline reporting as ``RankPool``.

Teardown is guaranteed: ``close()`` (also on ``with`` exit, at interpreter exit, and when setup fails half-way)
kills the ranks and holders and deletes every namespace; holders die with the process that made them, and
``cleanup_stale()`` removes namespaces left behind by a lab whose process was killed.

A developer's lab, not part of any wheel: it lives in ``tools/sagellm_comm_lab`` and tests import it as
``sagellm_comm_lab.netns`` (the root pytest configuration puts ``tools`` on the path).

Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN) and ``ip``/``tc`` (Debian: iproute2), ``unshare``/``nsenter``
(util-linux). ``unavailable_reason()`` says why a lab cannot be built here (tests skip with it).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sagellm_comm.errors import CommError, ErrorCode, InvalidArgumentError
from sagellm_comm.launch.errors import RankDeadlineError, RankFailedError
from sagellm_comm.launch.worker import STACK_SIGNAL

__all__ = ["HOST_IFNAME", "NetnsLab", "SimHost", "cleanup_stale", "unavailable_reason"]

PREFIX = "sgl"
HOST_IFNAME = "sgl0"
DEFAULT_SUBNET = "10.77.0"
TOOLS = {"ip": "iproute2", "tc": "iproute2", "unshare": "util-linux", "nsenter": "util-linux"}
CMD_TIMEOUT_S = 20.0
FAILURE_GRACE_S = 3.0
_NAME_RE = re.compile(rf"^{PREFIX}-(\d+)-\d+-")
_counter = itertools.count(1)
_probe_result: str | bool | None = False  # False: not probed yet

# The holder: enters a fresh UTS namespace (via unshare), names the host, says ready, and lives until its parent
# closes stdin or dies.
_HOLDER = r"""
import ctypes, signal, socket, sys
ctypes.CDLL(None).prctl(1, signal.SIGKILL)
socket.sethostname(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
"""

_RANK_ENTRY = "from sagellm_comm_lab.netns import _rank_main; _rank_main()"


class NetnsError(CommError):
    """A namespace command failed (setup or shaping): the message has the command and its stderr."""

    default_code = ErrorCode.UNAVAILABLE


@dataclass(frozen=True)
class SimHost:
    """One simulated host: its namespace, UTS hostname, address on the lab subnet and holder process."""

    index: int
    hostname: str
    netns: str
    address: str
    ifname: str
    holder_pid: int


def _missing_tools() -> list[str]:
    return [f"`{tool}` (Debian package {pkg})" for tool, pkg in TOOLS.items() if shutil.which(tool) is None]


def unavailable_reason() -> str | None:
    """Why a lab cannot be built here (not Linux, not root, a tool missing, namespaces refused), or None."""
    global _probe_result
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); run the tests as root"
    missing = _missing_tools()
    if missing:
        return "missing " + ", ".join(missing)
    if _probe_result is False:
        name = f"{PREFIX}-{os.getpid()}-0-probe"
        try:
            _ip("netns", "add", name)
            try:
                _run(
                    [
                        "tc",
                        "-n",
                        name,
                        "qdisc",
                        "add",
                        "dev",
                        "lo",
                        "root",
                        "tbf",
                        "rate",
                        "1mbit",
                        "burst",
                        "32kb",
                        "latency",
                        "10ms",
                    ]
                )
            finally:
                _ip("netns", "del", name)
            _probe_result = None
        except (NetnsError, OSError) as exc:
            _probe_result = f"cannot create a network namespace with a tbf qdisc here: {exc}"
    return _probe_result


def _run(argv: Sequence[str], timeout: float = CMD_TIMEOUT_S) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise NetnsError(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _ip(*args: str) -> str:
    return _run(["ip", *args])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_names() -> list[str]:
    out = _ip("netns", "list")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def cleanup_stale() -> list[str]:
    """Delete lab namespaces whose creating process is gone (a test run that was killed); returns their names."""
    removed = []
    for name in _netns_names():
        m = _NAME_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(NetnsError):
                _ip("netns", "del", name)
                removed.append(name)
    return removed


class NetnsLab:
    """``n_hosts`` simulated hosts on one bridged subnet. Use as a context manager (teardown is guaranteed).

    ``rate`` (e.g. ``"200mbit"``) shapes every host's link in both directions with tbf; ``shape()`` changes one
    host's link later. ``hostnames`` defaults to ``simhost0..N-1``.
    """

    def __init__(
        self,
        n_hosts: int = 2,
        *,
        hostnames: Sequence[str] | None = None,
        subnet: str = DEFAULT_SUBNET,
        rate: str | None = None,
        burst: str = "64kb",
        latency: str = "100ms",
        mtu: int = 1500,
        isolate: bool = False,
    ) -> None:
        if isinstance(n_hosts, bool) or not isinstance(n_hosts, int) or not 1 <= n_hosts <= 200:
            raise InvalidArgumentError(f"n_hosts must be an int in 1..200, got {n_hosts!r}")
        names = list(hostnames) if hostnames is not None else [f"simhost{i}" for i in range(n_hosts)]
        if len(names) != n_hosts:
            raise InvalidArgumentError(f"{len(names)} hostnames given for {n_hosts} hosts")
        if not re.fullmatch(r"\d{1,3}\.\d{1,3}\.\d{1,3}", subnet):
            raise InvalidArgumentError(
                f"subnet must be the first three octets of a /24, e.g. '10.77.0', not {subnet!r}"
            )
        reason = unavailable_reason()
        if reason:
            raise NetnsError(f"cannot build a namespace lab here: {reason}")
        cleanup_stale()  # namespaces of labs whose process was killed before it could tear down
        self.isolate = bool(isolate)
        self.tag = f"{PREFIX}-{os.getpid()}-{next(_counter)}"
        self.switch = f"{self.tag}-sw"
        self.hosts: list[SimHost] = []
        self._holders: list[subprocess.Popen[str]] = []
        self._namespaces: list[str] = []
        self._ranks: list[subprocess.Popen[bytes]] = []
        self._closed = False
        atexit.register(self.close)
        try:
            self._build(names, subnet, mtu)
            if rate is not None:
                for h in self.hosts:
                    self.shape(h.index, rate, burst=burst, latency=latency)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------------------------------
    def _build(self, names: list[str], subnet: str, mtu: int) -> None:
        self._add_netns(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for i, hostname in enumerate(names):
            ns = f"{self.tag}-h{i}"
            self._add_netns(ns)
            _ip(
                "link",
                "add",
                "name",
                HOST_IFNAME,
                "netns",
                ns,
                "mtu",
                str(mtu),
                "type",
                "veth",
                "peer",
                "name",
                f"p{i}",
                "netns",
                self.switch,
                "mtu",
                str(mtu),
            )
            _ip("-n", self.switch, "link", "set", f"p{i}", "master", "br0", "up")
            address = f"{subnet}.{i + 1}"
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", HOST_IFNAME)
            _ip("-n", ns, "link", "set", HOST_IFNAME, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            pid = self._start_holder(ns, hostname)
            self.hosts.append(SimHost(i, hostname, ns, address, HOST_IFNAME, pid))

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)

    def _start_holder(self, ns: str, hostname: str) -> int:
        unshare = ["unshare", "--uts", *(["--ipc", "--pid", "--fork"] if self.isolate else [])]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *unshare, sys.executable, "-c", _HOLDER, hostname],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._holders.append(proc)
        line = _readline(proc, CMD_TIMEOUT_S)
        if line.strip() != "ready":
            err = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
            raise NetnsError(f"the holder of {ns} did not start (got {line!r}; {err.strip()})")
        if self.isolate:  # `unshare --fork` stays outside the new PID namespace: the holder is its child
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                return int(f.read().split()[0])
        return proc.pid

    # ------------------------------------------------------------------------------------------------------
    def shape(self, host: int, rate: str, *, burst: str = "64kb", latency: str = "100ms") -> None:
        """Limit host ``host``'s link to ``rate`` (tc syntax, e.g. ``"200mbit"``) in both directions (tbf)."""
        h = self.hosts[host]
        tbf = ["root", "tbf", "rate", rate, "burst", burst, "latency", latency]
        _run(["tc", "-n", h.netns, "qdisc", "replace", "dev", h.ifname, *tbf])
        _run(["tc", "-n", self.switch, "qdisc", "replace", "dev", f"p{h.index}", *tbf])

    def unshape(self, host: int) -> None:
        h = self.hosts[host]
        with contextlib.suppress(NetnsError):
            _run(["tc", "-n", h.netns, "qdisc", "del", "dev", h.ifname, "root"])
        with contextlib.suppress(NetnsError):
            _run(["tc", "-n", self.switch, "qdisc", "del", "dev", f"p{h.index}", "root"])

    def command(self, host: int, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run inside host ``host`` (its UTS, network and mount namespaces)."""
        h = self.hosts[host]
        spaces = ["--uts", "--net", "--mount", *(["--ipc", "--pid"] if self.isolate else [])]
        return ["nsenter", f"--target={h.holder_pid}", *spaces, f"--wd={os.getcwd()}", "--", *argv]

    def run(
        self, host: int, argv: Sequence[str], timeout: float = CMD_TIMEOUT_S, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside host ``host`` and wait for it (at most ``timeout`` seconds)."""
        return subprocess.run(
            self.command(host, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
        )

    def popen(self, host: int, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a command inside host ``host``; the caller waits for it (``close()`` kills it if still alive)."""
        proc = subprocess.Popen(self.command(host, argv), **kwargs)
        self._ranks.append(proc)
        return proc

    # ------------------------------------------------------------------------------------------------------
    def run_ranks(
        self,
        fn: Callable[..., Any],
        placement: Sequence[int],
        *args: Any,
        timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
        master_port: int = 29500,
        **kwargs: Any,
    ) -> list[Any]:
        """Run ``fn(*args, **kwargs)`` on ``len(placement)`` ranks, rank ``r`` inside host ``placement[r]``;
        return the results in rank order. ``fn`` must be importable by name (a module-level function)."""
        if not placement or any(not 0 <= int(p) < len(self.hosts) for p in placement):
            raise InvalidArgumentError(f"placement must name hosts 0..{len(self.hosts) - 1}, got {list(placement)}")
        task = (fn, args, kwargs)
        try:
            blob = pickle.dumps(task)
        except Exception as exc:
            raise InvalidArgumentError(
                f"cannot send {getattr(fn, '__qualname__', fn)!r} to the ranks: {exc} "
                "(use a module-level function and picklable arguments)"
            ) from exc
        with tempfile.TemporaryDirectory(prefix=f"{self.tag}-ranks-") as tmp:
            task_path = os.path.join(tmp, "task.pkl")
            with open(task_path, "wb") as f:
                f.write(blob)
            procs = self._start_ranks(list(placement), tmp, task_path, env, master_port)
            return _collect(procs, tmp, getattr(fn, "__qualname__", repr(fn)), timeout)

    def _start_ranks(
        self, placement: list[int], tmp: str, task_path: str, env: Mapping[str, str] | None, master_port: int
    ) -> list[subprocess.Popen[bytes]]:
        master = self.hosts[placement[0]]
        base = {
            **os.environ,
            "WORLD_SIZE": str(len(placement)),
            "MASTER_ADDR": master.address,
            "MASTER_PORT": str(master_port),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            **(env or {}),
        }
        procs = []
        for rank, host in enumerate(placement):
            local = [r for r, h in enumerate(placement) if h == host]
            rank_env = {
                **base,
                "RANK": str(rank),
                "LOCAL_RANK": str(local.index(rank)),
                "LOCAL_WORLD_SIZE": str(len(local)),
                "GLOO_SOCKET_IFNAME": self.hosts[host].ifname,
                "SAGELLM_COMM_NETNS_TASK": task_path,
                "SAGELLM_COMM_NETNS_OUT": os.path.join(tmp, f"rank{rank}"),
            }
            with open(os.path.join(tmp, f"rank{rank}.log"), "wb") as log:
                procs.append(
                    self.popen(
                        host, [sys.executable, "-c", _RANK_ENTRY], env=rank_env, stdout=log, stderr=subprocess.STDOUT
                    )
                )
        return procs

    # ------------------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Kill every rank and holder and delete every namespace of this lab; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for proc in self._ranks:
            _kill(proc)
        for proc in self._holders:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            _kill(proc)
        for ns in reversed(self._namespaces):
            with contextlib.suppress(NetnsError):
                _ip("netns", "del", ns)
        atexit.unregister(self.close)

    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stdout.readline()


def _kill(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5.0)


def _collect(procs: list[subprocess.Popen[bytes]], tmp: str, what: str, timeout: float) -> list[Any]:
    """Wait for every rank; results in rank order, or RankFailedError / RankDeadlineError (all ranks killed)."""
    n = len(procs)
    results: list[Any] = [None] * n
    pending = set(range(n))
    failure: tuple[int, str, str, bytes | None] | None = None
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for rank in sorted(pending):
            if procs[rank].poll() is None:
                continue
            pending.discard(rank)
            msg = _read_result(tmp, rank)
            if msg is None:
                if failure is None:
                    log = _tail(os.path.join(tmp, f"rank{rank}.log"))
                    failure = (
                        rank,
                        f"rank {rank} exited with code {procs[rank].returncode} without a result",
                        log,
                        None,
                    )
            elif msg[0] == "ok":
                results[rank] = msg[1]
            elif failure is None:
                failure = (rank, msg[1], msg[2], msg[3])
        if failure is not None and pending:
            deadline = min(deadline, time.monotonic() + FAILURE_GRACE_S)
        time.sleep(0.02)
    if failure is not None:
        for p in procs:
            _kill(p)
        rank, summary, tb, blob = failure
        original = None
        if blob is not None:
            with contextlib.suppress(Exception):
                original = pickle.loads(blob)
        stuck = f"; ranks {sorted(pending)} were still running and were stopped" if pending else ""
        raise RankFailedError(
            f"rank {rank} failed in {what}: {summary}{stuck}\n--- rank {rank} traceback ---\n{tb}",
            rank=rank,
            remote_traceback=tb,
        ) from original
    if pending:
        stuck_ranks = tuple(sorted(pending))
        for r in stuck_ranks:
            with contextlib.suppress(ProcessLookupError):
                procs[r].send_signal(STACK_SIGNAL)
        time.sleep(0.5)
        stacks = {r: _tail(os.path.join(tmp, f"rank{r}.stack")) or "(no stack)" for r in stuck_ranks}
        for p in procs:
            _kill(p)
        shown = "\n".join(f"--- rank {r} was here ---\n{stacks[r]}" for r in stuck_ranks)
        raise RankDeadlineError(
            f"rank(s) {list(stuck_ranks)} did not finish {what} within {timeout:.1f}s; all "
            f"ranks were stopped.\n{shown}",
            stuck_ranks=stuck_ranks,
            stacks=stacks,
        )
    return results


def _read_result(tmp: str, rank: int) -> Any:
    try:
        with open(os.path.join(tmp, f"rank{rank}.result"), "rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None


def _tail(path: str, limit: int = 4000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-limit:]
    except OSError:
        return ""


def _rank_main() -> None:
    """Inside a rank process: run the pickled task, write ("ok", result) or ("err", ...) next to it, exit."""
    import faulthandler

    from sagellm_comm.launch.worker import _die_with_parent, _encode_error, _shutdown

    _die_with_parent()
    out = os.environ["SAGELLM_COMM_NETNS_OUT"]
    stack_file = open(out + ".stack", "w")  # noqa: SIM115 - lives as long as the process
    faulthandler.register(STACK_SIGNAL, file=stack_file, all_threads=True)
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    try:
        with open(os.environ["SAGELLM_COMM_NETNS_TASK"], "rb") as f:
            fn, args, kwargs = pickle.load(f)
        msg: tuple[Any, ...] = ("ok", fn(*args, **kwargs))
    except BaseException as exc:
        msg = ("err", *_encode_error(exc))
    try:
        blob = pickle.dumps(msg)
    except Exception as exc:
        blob = pickle.dumps(("err", f"the result cannot be pickled: {exc}", "", None))
    with open(out + ".result.tmp", "wb") as f:
        f.write(blob)
    os.replace(out + ".result.tmp", out + ".result")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _shutdown()
