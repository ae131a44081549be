"""Where rank 0's rendezvous store listens: loopback unless an address is configured.

torch's ``TCPStore`` server listens on every interface. A job whose ranks all run on this host (``MASTER_ADDR``
unset, ``localhost`` or a loopback address) has no reason to be reachable from the network, so the core binds
the listening socket itself and hands it to ``TCPStore`` (``master_listen_fd``):

- ``SAGELLM_COMM_BIND_ADDR`` set: that address (``0.0.0.0`` or ``::`` for every interface);
- ``MASTER_ADDR`` loopback (the default ``127.0.0.1``, ``localhost``, ``::1``): loopback only;
- ``MASTER_ADDR`` another address of this host: that address only;
- ``MASTER_ADDR`` a name this host resolves to loopback (Debian maps its own hostname to ``127.0.1.1``) while
  other hosts resolve it to a routable address: every interface, as torch does, since binding the loopback
  address would lock the other hosts out.

Binding is retried with backoff for up to ``BIND_RETRY_S`` (a previous job's store on the same port may be
going down); a port another process keeps holding fails with a message naming it.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Callable, Sequence

from sagellm_comm.errors import GroupInvalidError
from sagellm_comm.retry import retry

__all__ = ["BIND_ADDR_ENV", "BIND_RETRY_S", "bind_address", "bind_rule", "listen_socket"]

BIND_ADDR_ENV = "SAGELLM_COMM_BIND_ADDR"
BIND_RETRY_S = 2.0


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


def bind_rule(
    master_addr: str, configured: str, resolve: Callable[[str], Sequence[str] | None]
) -> tuple[str, str] | None:
    """The address to listen on for ``master_addr`` and why: ``(address, reason)``, ``""`` meaning every
    interface; None when ``master_addr`` does not resolve. ``configured`` is ``SAGELLM_COMM_BIND_ADDR``'s value,
    ``resolve(name)`` the addresses a name resolves to (None when it does not)."""
    configured = configured.strip()
    if configured:
        return ("" if configured in ("0.0.0.0", "::", "*") else configured), f"{BIND_ADDR_ENV}={configured}"
    if master_addr == "localhost" or _is_loopback(master_addr):
        return ("::1" if ":" in master_addr else "127.0.0.1"), f"MASTER_ADDR {master_addr} is loopback"
    addrs = resolve(master_addr)
    if not addrs:
        return None
    if _is_loopback(addrs[0]):
        return "", f"MASTER_ADDR {master_addr} resolves to loopback here but names this host to others"
    return addrs[0], f"MASTER_ADDR {master_addr}"


def _getaddrinfo(name: str) -> list[str] | None:
    try:
        # sockaddr[0] is the address string for the AF_INET/AF_INET6 results of a SOCK_STREAM lookup
        return [str(info[4][0]) for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)]
    except OSError:
        return None


def bind_address(master_addr: str) -> tuple[str, str]:
    """:func:`bind_rule` for this process (its ``SAGELLM_COMM_BIND_ADDR``, the system resolver)."""
    rule = bind_rule(master_addr, os.environ.get(BIND_ADDR_ENV, ""), _getaddrinfo)
    if rule is None:
        raise GroupInvalidError(
            f"MASTER_ADDR={master_addr!r} does not resolve on this host; rank 0 must be able to listen on it: use "
            "this host's address or name",
            retryable=False,
        )
    return rule


def _bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    if address == "":  # every interface, IPv6 and IPv4 when the host has IPv6
        family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
        address = "::" if family == socket.AF_INET6 else "0.0.0.0"
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and address == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((address, port))
        sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return sock


def listen_socket(master_addr: str, port: int, *, retry_s: float = BIND_RETRY_S) -> socket.socket:
    """A listening socket for rank 0's store, on :func:`bind_address`; ``OSError`` (``EADDRINUSE`` and the like)
    once the port stayed taken for ``retry_s``."""
    address, _ = bind_address(master_addr)
    return retry(
        lambda: _bind(address, port),
        retry_on=lambda e: isinstance(e, OSError) and e.errno == errno.EADDRINUSE,
        deadline_s=retry_s,
    )
