"""Linux futexes on words of a shared mapping: how a waiting rank sleeps instead of burning a core.

``wait(addr, expected, timeout_s)`` sleeps while the 32-bit word at ``addr`` still holds ``expected`` (the kernel
checks atomically, so a wake between our read and the syscall is never lost); ``wake(addr)`` wakes every sleeper on
the word. The words live in a ``MAP_SHARED`` mapping, so these are the process-shared futex operations (no
``FUTEX_PRIVATE_FLAG``). A wake reaches sleepers of the same kernel only: ranks on other hosts of a shared CXL pool
are never woken this way, which is why every wait is also bounded by a short timeout and re-checks the word.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import platform

__all__ = ["FUTEX_AVAILABLE", "FUTEX_REASON", "wait", "wake"]

_FUTEX_WAIT = 0
_FUTEX_WAKE = 1
_SYSCALL_NR = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}
_INT_MAX = 0x7FFFFFFF


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _load() -> tuple[object | None, int, str]:
    machine = platform.machine().lower()
    nr = _SYSCALL_NR.get(machine)
    if platform.system() != "Linux" or nr is None:
        return None, -1, f"futex needs Linux on x86_64 or aarch64 (this is {platform.system()} {machine})"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError as exc:
        return None, -1, f"cannot load libc: {exc}"
    fn = libc.syscall
    fn.restype = ctypes.c_long
    return fn, nr, "ok"


_syscall, _NR, FUTEX_REASON = _load()
FUTEX_AVAILABLE = _syscall is not None


def wake(addr: int, count: int = _INT_MAX) -> int:
    """Wake up to ``count`` sleepers on the word at ``addr``; returns how many were woken."""
    return int(_syscall(_NR, ctypes.c_void_p(addr), _FUTEX_WAKE, count, None, None, 0))  # type: ignore[misc]


def wait(addr: int, expected: int, timeout_s: float) -> None:
    """Sleep while ``*addr == expected``, at most ``timeout_s``; returns on wake, timeout, signal or mismatch."""
    sec = int(timeout_s)
    ts = _Timespec(sec, int((timeout_s - sec) * 1e9))
    rc = _syscall(
        _NR,
        ctypes.c_void_p(addr),
        _FUTEX_WAIT,
        ctypes.c_int(expected),
        ctypes.byref(ts),  # type: ignore[misc]
        None,
        0,
    )
    if rc == -1:
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.ETIMEDOUT, errno.EINTR):
            raise OSError(err, f"futex wait failed: {errno.errorcode.get(err, err)}")
