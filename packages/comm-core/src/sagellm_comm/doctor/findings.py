"""What a check returns (``Finding``), what it looks at (``Context``) and small helpers every check shares."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FAIL",
    "INFO",
    "LEVELS",
    "OK",
    "WARN",
    "Check",
    "Context",
    "Finding",
    "fmt_age",
    "fmt_bytes",
    "read_text",
    "resolve",
]

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"
LEVELS = (OK, INFO, WARN, FAIL)  # in order of severity; only FAIL makes ``doctor`` exit 1


@dataclass(frozen=True)
class Finding:
    """One thing a check saw: ``found`` says what, ``fix`` the command or setting that repairs it (empty when
    nothing needs doing)."""

    check: str
    level: str
    found: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")


@dataclass
class Context:
    """What the checks read: the environment, the size of the job to plan for, and where procfs and sysfs are
    (tests point these at fake trees)."""

    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    ranks: int | None = None  # ranks per host to size /dev/shm and threads for; None: LOCAL_WORLD_SIZE, else 8
    stale_after_s: float = 600.0  # sagellm-comm-* files in /dev/shm older than this are leftovers
    proc: str = "/proc"
    sys: str = "/sys"
    resolve_timeout_s: float = 3.0
    ifaces: list[Any] | None = None  # network.Interface list; None: read from this host
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def ranks_per_host(self) -> tuple[int, str | None]:
        """(ranks, where that number comes from: None for the default of 8)."""
        if self.ranks:
            return self.ranks, "--ranks"
        raw = self.env.get("LOCAL_WORLD_SIZE", "")
        if raw.strip().isdigit() and int(raw) > 0:
            return int(raw), "LOCAL_WORLD_SIZE"
        return 8, None


Check = Callable[[Context], Iterable[Finding]]


def read_text(path: str) -> str | None:
    """A small procfs/sysfs file, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def fmt_age(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def resolve(name: str, timeout_s: float) -> tuple[list[str] | None, str]:
    """The addresses ``name`` resolves to, or (None, why not); a resolver that does not answer within
    ``timeout_s`` counts as a failure (a rank would stall on it too)."""
    result: dict[str, Any] = {}

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            result["addrs"] = list(dict.fromkeys(str(i[4][0]) for i in infos))
        except (OSError, UnicodeError) as exc:
            result["error"] = str(exc)

    t = threading.Thread(target=lookup, daemon=True, name="sagellm-comm-doctor-resolve")
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        return None, f"no answer from the resolver within {timeout_s:.0f} s"
    if "addrs" in result:
        return result["addrs"], ""
    return None, result.get("error", "unknown error")
