"""Network interfaces, the ``*_SOCKET_IFNAME`` variables that pick one, and the host name gloo resolves.

A ``*_SOCKET_IFNAME`` naming an interface that does not exist here, is down, or has no address is the classic
multi-host hang: ranks advertise an address nobody can reach, or fail to bind. Interfaces come from the standard
library only (``socket.if_nameindex``, ``SIOCGIFFLAGS``/``SIOCGIFADDR``, ``/proc/net/if_inet6``,
``/sys/class/net/*/operstate``).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass, field

from sagellm_comm.doctor.findings import FAIL, INFO, OK, WARN, Context, Finding, read_text, resolve

__all__ = [
    "IFNAME_VARS",
    "Interface",
    "check_hostname",
    "check_interfaces",
    "check_socket_ifname",
    "interfaces",
    "is_loopback",
    "list_interfaces",
    "matching",
]

CHECK_IFACES = "interfaces"
CHECK_IFNAME = "socket-ifname"
CHECK_HOSTNAME = "hostname"
_SIOCGIFFLAGS, _SIOCGIFADDR = 0x8913, 0x8915
_IFF_UP, _IFF_LOOPBACK, _IFF_RUNNING = 0x1, 0x8, 0x40

# variable -> (who reads it, syntax): "exact" = comma-separated names; "nccl" = NCCL's prefix list with the
# "=" (exact) and "^" (exclude) forms; "single" = one name
IFNAME_VARS = {
    "GLOO_SOCKET_IFNAME": ("gloo", "exact"),
    "NCCL_SOCKET_IFNAME": ("NCCL/RCCL", "nccl"),
    "TP_SOCKET_IFNAME": ("TensorPipe (torch RPC)", "single"),
    "HCCL_SOCKET_IFNAME": ("HCCL", "nccl"),
}


@dataclass(frozen=True)
class Interface:
    name: str
    up: bool
    loopback: bool = False
    operstate: str = "unknown"
    addresses: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        return f"{self.name} {' '.join(self.addresses) or '(no address)'}"


def is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


def _ioctl(name: str, request: int) -> bytes | None:
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            return fcntl.ioctl(s.fileno(), request, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None


def _ipv6(proc: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (read_text(os.path.join(proc, "net", "if_inet6")) or "").splitlines():
        parts = line.split()
        if len(parts) >= 6 and len(parts[0]) == 32:
            addr = ipaddress.IPv6Address(bytes.fromhex(parts[0]))
            out.setdefault(parts[5], []).append(str(addr))
    return out


def list_interfaces(ctx: Context) -> list[Interface]:
    v6 = _ipv6(ctx.proc)
    found = []
    for _, name in socket.if_nameindex():
        flags_raw = _ioctl(name, _SIOCGIFFLAGS)
        flags = struct.unpack_from("H", flags_raw, 16)[0] if flags_raw else 0
        if not flags_raw:  # no ioctl (unusual sandbox): sysfs
            text = read_text(os.path.join(ctx.sys, "class", "net", name, "flags"))
            flags = int(text, 16) if text and text.strip().startswith("0x") else 0
        addr_raw = _ioctl(name, _SIOCGIFADDR)
        v4 = [socket.inet_ntoa(addr_raw[20:24])] if addr_raw else []
        state = (read_text(os.path.join(ctx.sys, "class", "net", name, "operstate")) or "unknown").strip()
        # "unknown" is what loopback and many virtual interfaces report while they work
        up = (
            bool(flags & _IFF_UP)
            and bool(flags & _IFF_RUNNING or state == "up")
            and state not in ("down", "lowerlayerdown")
        )
        found.append(
            Interface(
                name=name,
                up=up,
                loopback=bool(flags & _IFF_LOOPBACK),
                operstate=state,
                addresses=tuple(v4 + v6.get(name, [])),
            )
        )
    return found


def interfaces(ctx: Context) -> list[Interface]:
    if ctx.ifaces is None:
        ctx.ifaces = list_interfaces(ctx)
    return ctx.ifaces


def check_interfaces(ctx: Context) -> list[Finding]:
    ifs = interfaces(ctx)
    up = [i for i in ifs if i.up and i.addresses]
    down = [i.name for i in ifs if not i.up]
    listed = "; ".join(i.describe() for i in up) or "none"
    tail = f" (down: {', '.join(down)})" if down else ""
    if not any(not i.loopback for i in up):
        return [
            Finding(
                CHECK_IFACES,
                INFO,
                f"only loopback is up with an address: {listed}{tail}; ranks on other "
                "hosts cannot reach this one (one host is fine)",
            )
        ]
    return [Finding(CHECK_IFACES, OK, f"up: {listed}{tail}")]


def matching(value: str, syntax: str, ifs: list[Interface]) -> tuple[list[Interface], list[str]]:
    """(interfaces ``value`` selects, names it lists that match nothing)."""
    v = value.strip()
    exclude = syntax == "nccl" and v.startswith("^")
    v = v[1:] if exclude else v
    exact = syntax != "nccl" or v.startswith("=")
    v = v[1:] if syntax == "nccl" and v.startswith("=") else v
    names = [v] if syntax == "single" else [n.strip() for n in v.split(",") if n.strip()]

    def hit(i: Interface, n: str) -> bool:
        return i.name == n if exact else i.name.startswith(n)

    if exclude:
        return [i for i in ifs if not any(hit(i, n) for n in names)], []
    chosen = [i for i in ifs if any(hit(i, n) for n in names)]
    unknown = [n for n in names if not any(hit(i, n) for i in ifs)]
    return chosen, unknown


def check_socket_ifname(ctx: Context) -> list[Finding]:
    ifs = interfaces(ctx)
    usable = ", ".join(i.name for i in ifs if i.up and i.addresses and not i.loopback) or "only lo"
    master = ctx.env.get("MASTER_ADDR", "")
    out: list[Finding] = []
    for var, (reader, syntax) in IFNAME_VARS.items():
        value = ctx.env.get(var)
        if value is None:
            continue
        chosen, unknown = matching(value, syntax, ifs)
        good = [i for i in chosen if i.up and i.addresses]
        fix = f"export {var}=<one of: {usable}> (or unset it)"
        if not value.strip():
            out.append(Finding(CHECK_IFNAME, WARN, f"{var} is set but empty", f"unset {var}, or {fix}"))
        elif unknown and syntax != "nccl":
            out.append(
                Finding(
                    CHECK_IFNAME,
                    FAIL,
                    f"{var}={value!r} names {', '.join(unknown)}, which does not "
                    f"exist here: {reader} cannot bind and ranks hang or fail at init",
                    fix,
                )
            )
        elif syntax != "nccl" and len(good) < len(chosen):
            bad = ", ".join(f"{i.name} ({'down' if not i.up else 'no address'})" for i in chosen if i not in good)
            out.append(Finding(CHECK_IFNAME, FAIL, f"{var}={value!r}: {bad}; {reader} cannot use it", fix))
        elif not good:
            out.append(
                Finding(
                    CHECK_IFNAME,
                    FAIL,
                    f"{var}={value!r} selects no interface that is up with an "
                    f"address here: {reader} finds no socket interface and fails or hangs at init",
                    fix,
                )
            )
        elif all(i.loopback for i in good) and master and not is_loopback(master) and master != "localhost":
            out.append(
                Finding(
                    CHECK_IFNAME,
                    WARN,
                    f"{var}={value!r} selects loopback only, but MASTER_ADDR={master} "
                    f"is not loopback: {reader} on other hosts cannot reach this rank",
                    fix,
                )
            )
        else:
            none = f" ({', '.join(unknown)} match nothing)" if unknown else ""
            out.append(
                Finding(
                    CHECK_IFNAME, OK, f"{var}={value!r}: {reader} uses {'; '.join(i.describe() for i in good)}{none}"
                )
            )
    if not out:
        out.append(
            Finding(
                CHECK_IFNAME,
                OK,
                f"none of {', '.join(IFNAME_VARS)} is set: gloo uses the address the "
                "host name resolves to, NCCL the first non-loopback, non-docker interface",
            )
        )
    return out


def check_hostname(ctx: Context) -> list[Finding]:
    host = socket.gethostname()
    addrs, why = resolve(host, ctx.resolve_timeout_s)
    master = ctx.env.get("MASTER_ADDR", "")
    multi_host = bool(master) and master != "localhost" and not is_loopback(master)
    gloo_set = bool(ctx.env.get("GLOO_SOCKET_IFNAME"))
    if addrs is None:
        return [
            Finding(
                CHECK_HOSTNAME,
                WARN if not gloo_set else INFO,
                f"this host's name {host!r} does not resolve ({why}): gloo without GLOO_SOCKET_IFNAME "
                "cannot pick an address ('Unable to resolve hostname to a (local) address')",
                f"add '<address> {host}' to /etc/hosts, or export GLOO_SOCKET_IFNAME=<interface>",
            )
        ]
    if all(is_loopback(a) for a in addrs):
        level = WARN if multi_host and not gloo_set else INFO
        return [
            Finding(
                CHECK_HOSTNAME,
                level,
                f"host name {host!r} resolves to loopback only ({', '.join(addrs)}): "
                "fine on one host; for several hosts gloo would advertise an address the others cannot reach",
                ""
                if gloo_set
                else "for multi-host jobs: export GLOO_SOCKET_IFNAME=<interface> (or map the "
                "name to a routable address in /etc/hosts)",
            )
        ]
    local = {a for i in interfaces(ctx) for a in i.addresses}
    if local and not any(a in local or is_loopback(a) for a in addrs):
        return [
            Finding(
                CHECK_HOSTNAME,
                WARN,
                f"host name {host!r} resolves to {', '.join(addrs)}, none of which is "
                "an address of this host: gloo binds there and fails ('Cannot assign requested address')",
                f"fix /etc/hosts (or DNS) for {host}, or export GLOO_SOCKET_IFNAME=<interface>",
            )
        ]
    return [Finding(CHECK_HOSTNAME, OK, f"host name {host!r} resolves to {', '.join(addrs)}")]
