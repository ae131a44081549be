"""The rendezvous address and port: MASTER_ADDR resolves, MASTER_PORT is free where rank 0 will listen, and is
outside the ephemeral range (where any outgoing connection may take it).

Who holds a busy port is read from ``/proc/net/tcp{,6}`` (the socket's inode and uid) and ``/proc/<pid>/fd``
(which process has that socket open); what this user may not inspect is reported as such, with ``ss -ltnp``.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass

from sagellm_comm.doctor.findings import FAIL, INFO, OK, WARN, Context, Finding, read_text, resolve
from sagellm_comm.doctor.network import is_loopback
from sagellm_comm.listen import BIND_ADDR_ENV, bind_rule
from sagellm_comm.rendezvous import DEFAULT_MASTER_ADDR, DEFAULT_MASTER_PORT

__all__ = ["PortHolder", "bind_target", "check_master_addr", "check_master_port", "ephemeral_range", "port_holders"]

CHECK_ADDR = "master-addr"
CHECK_PORT = "master-port"
_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}
FREE_PORT_CMD = "python -c 'import socket; s=socket.socket(); s.bind((\"\", 0)); print(s.getsockname()[1])'"


@dataclass(frozen=True)
class PortHolder:
    local: str
    state: str
    uid: int
    pid: int | None = None
    name: str = ""
    cmdline: str = ""

    def describe(self) -> str:
        if self.pid is None:
            try:
                import pwd

                user = pwd.getpwuid(self.uid).pw_name
            except (ImportError, KeyError):
                user = "?"
            return f"a socket ({self.state} on {self.local}) of uid {self.uid} ({user}) this user cannot trace"
        cmd = self.cmdline if len(self.cmdline) <= 100 else self.cmdline[:97] + "..."
        return f"pid {self.pid} ({self.name}: {cmd}), {self.state} on {self.local}"


def _addr(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is host-endian
    return str(ipaddress.ip_address(words))


def port_holders(port: int, proc: str = "/proc") -> list[PortHolder]:
    """Sockets bound to ``port`` (listeners first) and, where this user can see it, the process holding each."""
    entries: list[tuple[str, str, int, str]] = []  # inode, state, uid, local address
    for table in ("tcp", "tcp6"):
        for line in (read_text(os.path.join(proc, "net", table)) or "").splitlines()[1:]:
            parts = line.split()
            if len(parts) < 10 or ":" not in parts[1]:
                continue
            ip_hex, port_hex = parts[1].rsplit(":", 1)
            try:
                if int(port_hex, 16) != port:
                    continue
                local = f"{_addr(ip_hex)}:{port}"
                entries.append((parts[9], _TCP_STATES.get(parts[3], parts[3]), int(parts[7]), local))
            except ValueError:
                continue
    entries.sort(key=lambda e: e[1] != "LISTEN")
    wanted = {f"socket:[{e[0]}]" for e in entries if e[0] != "0"}
    owners: dict[str, int] = {}
    if wanted:
        try:
            pids = [p for p in os.listdir(proc) if p.isdigit()]
        except OSError:
            pids = []
        for pid in pids:
            fd_dir = os.path.join(proc, pid, "fd")
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink(os.path.join(fd_dir, fd))
                except OSError:
                    continue
                if link in wanted and link not in owners:
                    owners[link] = int(pid)
            if len(owners) == len(wanted):
                break
    out = []
    for inode, state, uid, local in entries:
        owner = owners.get(f"socket:[{inode}]")
        name = cmd = ""
        if owner is not None:
            name = (read_text(os.path.join(proc, str(owner), "comm")) or "?").strip()
            cmd = " ".join((read_text(os.path.join(proc, str(owner), "cmdline")) or "").replace("\0", " ").split())
        out.append(PortHolder(local=local, state=state, uid=uid, pid=owner, name=name, cmdline=cmd))
    return out


def ephemeral_range(proc: str = "/proc") -> tuple[int, int, set[int]] | None:
    """(low, high, reserved ports) of the kernel's ephemeral port range, or None when it cannot be read."""
    text = read_text(os.path.join(proc, "sys", "net", "ipv4", "ip_local_port_range"))
    try:
        lo, hi = (int(x) for x in (text or "").split()[:2])
    except ValueError:
        return None
    reserved: set[int] = set()
    for part in (read_text(os.path.join(proc, "sys", "net", "ipv4", "ip_local_reserved_ports")) or "").split(","):
        a, _, b = part.strip().partition("-")
        if a.isdigit():
            reserved.update(range(int(a), int(b or a) + 1) if (b or a).isdigit() else ())
    return lo, hi, reserved


def _resolve(ctx: Context, name: str) -> tuple[list[str] | None, str]:
    return ctx.cached(f"resolve:{name}", lambda: resolve(name, ctx.resolve_timeout_s))


def _bindable(ip: str) -> bool:
    """Whether ``ip`` is an address of this host."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


def check_master_addr(ctx: Context) -> list[Finding]:
    addr = ctx.env.get("MASTER_ADDR", "").strip()
    if not addr:
        return [
            Finding(
                CHECK_ADDR,
                OK,
                f"MASTER_ADDR unset: ranks meet at {DEFAULT_MASTER_ADDR}, so all of them run "
                "on this host (set it to rank 0's address for several hosts)",
            )
        ]
    if addr == "localhost" or is_loopback(addr):
        return [Finding(CHECK_ADDR, OK, f"MASTER_ADDR={addr} is loopback: every rank must run on this host")]
    addrs, why = _resolve(ctx, addr)
    if addrs is None:
        return [
            Finding(
                CHECK_ADDR,
                FAIL,
                f"MASTER_ADDR={addr!r} does not resolve here ({why}): every rank fails or hangs at init",
                f"export MASTER_ADDR=<rank 0's IP address, or a name every host resolves> (check: getent hosts {addr})",
            )
        ]
    shown = f"MASTER_ADDR={addr} resolves to {', '.join(addrs)}"
    if addr not in addrs and all(is_loopback(a) for a in addrs):
        return [
            Finding(
                CHECK_ADDR,
                INFO,
                f"{shown}, loopback here: fine if every rank runs on this host; other "
                "hosts must resolve it to a routable address of this host (Debian maps its host name to "
                "127.0.1.1)",
            )
        ]
    if any(_bindable(a) for a in addrs):
        return [Finding(CHECK_ADDR, OK, f"{shown}: this host (rank 0 runs here)")]
    return [Finding(CHECK_ADDR, OK, f"{shown}: another host (rank 0's; check its port there)")]


def bind_target(ctx: Context) -> tuple[str | None, str]:
    """(address rank 0's store listens on, "" for every interface, None when rank 0 is another host or
    MASTER_ADDR does not resolve; how it was chosen): the store's own rule, :func:`sagellm_comm.listen.bind_rule`."""
    addr = ctx.env.get("MASTER_ADDR", "").strip() or DEFAULT_MASTER_ADDR
    configured = ctx.env.get(BIND_ADDR_ENV, "").strip()
    rule = bind_rule(addr, configured, lambda name: _resolve(ctx, name)[0])
    if rule is None:
        return None, f"MASTER_ADDR {addr} does not resolve"
    target, how = rule
    if target and not configured and not is_loopback(target):  # MASTER_ADDR's own address: here or elsewhere?
        if not _bindable(target):
            return None, f"MASTER_ADDR {addr} is another host"
        how = f"MASTER_ADDR {addr} is this host"
    return target, how


def check_master_port(ctx: Context) -> list[Finding]:
    raw = ctx.env.get("MASTER_PORT", "").strip()
    explicit = bool(raw)
    if explicit and not (raw.isdigit() and 0 < int(raw) < 65536):
        return [
            Finding(
                CHECK_PORT,
                FAIL,
                f"MASTER_PORT={raw!r} is not a port (1..65535): init fails",
                "export MASTER_PORT=29500 (any free port >= 1024, the same on every rank)",
            )
        ]
    port = int(raw) if explicit else DEFAULT_MASTER_PORT
    label = f"MASTER_PORT={port}" if explicit else f"MASTER_PORT unset (default {port})"
    out: list[Finding] = []
    other_port = f"export MASTER_PORT=<another port> on every rank (a free one: {FREE_PORT_CMD})"
    if port < 1024:
        out.append(Finding(CHECK_PORT, WARN, f"{label} is privileged: only root may listen on it", other_port))
    eph = ephemeral_range(ctx.proc)
    if eph is not None:
        lo, hi, reserved = eph
        if lo <= port <= hi and port not in reserved:
            out.append(
                Finding(
                    CHECK_PORT,
                    WARN,
                    f"{label} lies in the ephemeral port range {lo}-{hi}: any outgoing "
                    "connection on this host may be given it, and then rank 0 cannot listen there",
                    f"pick a port below {lo} on every rank (29500 is torch's default), or reserve it: "
                    f"sudo sysctl -w net.ipv4.ip_local_reserved_ports={port}",
                )
            )
    target, how = bind_target(ctx)
    if target is None:
        out.append(
            Finding(CHECK_PORT, INFO, f"{label}: not tested here ({how}); run sagellm-comm doctor on rank 0's host")
        )
        return out
    where = f"{target or 'every interface'} ({how})"
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a listener does: TIME_WAIT is no conflict
            s.bind((target, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            holders = port_holders(port, ctx.proc)
            traced = [h for h in holders if h.pid is not None]
            who = (
                "; ".join(h.describe() for h in holders[:3])
                if holders
                else "another process (not visible in this network namespace's /proc/net/tcp)"
            )
            fix = other_port
            if traced:
                fix += f"; or, if it is a leftover job, stop it: kill {traced[0].pid}"
            fix += f"; see who holds it: ss -ltnp 'sport = :{port}'"
            out.append(
                Finding(
                    CHECK_PORT,
                    FAIL if explicit else WARN,
                    f"{label}: port taken on {where} by {who}. Rank 0 cannot host the rendezvous store "
                    "('address already in use'); other ranks may reach the stranger and hang until the "
                    "timeout",
                    fix,
                )
            )
        elif exc.errno == errno.EADDRNOTAVAIL:
            out.append(
                Finding(
                    CHECK_PORT,
                    FAIL,
                    f"{target} is not an address of this host ({how}): rank 0 cannot listen there",
                    f"unset {BIND_ADDR_ENV}, or set it (or MASTER_ADDR) to an address of this host",
                )
            )
        elif exc.errno == errno.EACCES:
            out.append(
                Finding(CHECK_PORT, WARN, f"{label}: not allowed to listen on {where} ({exc.strerror})", other_port)
            )
        else:
            out.append(Finding(CHECK_PORT, WARN, f"{label}: cannot test {where}: {exc}", ""))
        return out
    out.append(Finding(CHECK_PORT, OK, f"{label}: free on {where}"))
    return out
