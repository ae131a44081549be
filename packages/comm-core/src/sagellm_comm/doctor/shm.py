"""``/dev/shm``: there, writable, a tmpfs, large enough for a group, and free of regions crashed jobs left.

The shm backend (a plugin) keeps one region per group in ``SAGELLM_COMM_SHM_DIR`` (default ``/dev/shm``), named
``sagellm-comm-<key>``, created 0600 and unlinked as soon as every rank has mapped it; NCCL's shared-memory
transport and torch's tensor sharing use ``/dev/shm`` too. Docker gives containers 64 MiB there by default: the
classic cause of "no available shared memory broadcast block" and of SIGBUS (bus error) mid-collective. The core
knows no plugin, so the sizes below are read from the same environment variables the plugin reads and sized with
the plugin's layout (``group_bytes``; a test checks it against the plugin when that is installed).
"""

from __future__ import annotations

import os
import stat
import tempfile
import time

from sagellm_comm.doctor.findings import FAIL, INFO, OK, WARN, Context, Finding, fmt_age, fmt_bytes, read_text

__all__ = [
    "DEFAULT_SHM_DIR",
    "RECOMMENDED_SHM_BYTES",
    "REGION_PREFIX",
    "check_shm",
    "check_shm_leftovers",
    "find_mount",
    "group_bytes",
    "parse_size",
    "shm_dir",
]

SHM_DIR_ENV = "SAGELLM_COMM_SHM_DIR"
SLOT_ENV = "SAGELLM_COMM_SHM_SLOT_BYTES"
CHUNK_ENV = "SAGELLM_COMM_SHM_CHUNK_BYTES"
DEFAULT_SHM_DIR = "/dev/shm"
REGION_PREFIX = "sagellm-comm-"
RECOMMENDED_SHM_BYTES = 1 << 30
DEFAULT_SLOT_BYTES = 512 << 10
CROWDED_SLOT_BYTES = 2 << 20
DEFAULT_CHUNK_BYTES = 256 << 10
_UNITS = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "KB": 1 << 10,
    "KIB": 1 << 10,
    "M": 1 << 20,
    "MB": 1 << 20,
    "MIB": 1 << 20,
    "G": 1 << 30,
    "GB": 1 << 30,
    "GIB": 1 << 30,
}
CHECK_SHM = "shm"
CHECK_LEFTOVERS = "shm-leftovers"
DOCKER_FIX = (
    "docker run --shm-size=1g (or --ipc=host); Kubernetes: mount an emptyDir with medium: Memory at "
    "/dev/shm; bare host: sudo mount -o remount,size=1g /dev/shm"
)


def shm_dir(ctx: Context) -> str:
    return ctx.env.get(SHM_DIR_ENV) or DEFAULT_SHM_DIR


def parse_size(text: str) -> int:
    """``"512K"``, ``"2M"``, ``"1048576"`` -> bytes (the units the shm backend accepts); ValueError otherwise."""
    t = text.strip().upper()
    digits = t.rstrip("KMGIB")
    unit = t[len(digits) :].strip()
    if unit not in _UNITS:
        raise ValueError(text)
    n = int(float(digits) * _UNITS[unit])
    if n <= 0:
        raise ValueError(text)
    return n


def _up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def group_bytes(ranks: int, slot_bytes: int, chunk_bytes: int) -> int:
    """Size of one shm group's region: header page, a flag line pair per rank and per ordered pair, two parities
    of ``ranks`` slots, and two send/recv mailboxes per ordered pair (the shm backend's layout)."""
    slot, chunk = _up(slot_bytes, 4096), _up(chunk_bytes, 128)
    slots_off = _up(4096 + ranks * 256 + ranks * ranks * 256, 4096)
    return _up(slots_off + 2 * ranks * slot + 2 * ranks * ranks * (64 + chunk), 4096)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def find_mount(path: str, proc: str = "/proc") -> tuple[str, str, str] | None:
    """(mount point, file system type, mount and super options) of the mount holding ``path``."""
    text = read_text(os.path.join(proc, "self", "mountinfo"))
    if not text:
        return None
    target = os.path.realpath(path)
    best: tuple[str, str, str] | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or not tail:
            continue
        point = fields[4].encode().decode("unicode_escape")  # \040 is a space
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):  # the last, longest mount wins
            opts = fields[5].split(",") + (tail[2].split(",") if len(tail) > 2 else [])
            best = (point, tail[0], ",".join(dict.fromkeys(o for o in opts if o)))
    return best


def _sizes(ctx: Context) -> tuple[int, int, int, str, list[Finding]]:
    """(ranks, slot, chunk, how the ranks were counted, findings about bad size variables)."""
    ranks, source = ctx.ranks_per_host()
    source = source or "8 by default; --ranks N to size for another count"
    bad: list[Finding] = []
    sizes: dict[str, int | None] = {}
    for env, default in ((SLOT_ENV, None), (CHUNK_ENV, DEFAULT_CHUNK_BYTES)):
        raw = ctx.env.get(env, "")
        sizes[env] = default
        if raw:
            try:
                sizes[env] = parse_size(raw)
            except ValueError:
                bad.append(
                    Finding(
                        CHECK_SHM,
                        FAIL,
                        f"{env}={raw!r} is not a size; the shm backend refuses to start",
                        f"export {env}=<bytes, or with a unit: 512K, 2M> (or unset it)",
                    )
                )
    slot = sizes[SLOT_ENV] or (CROWDED_SLOT_BYTES if ranks > _cores() else DEFAULT_SLOT_BYTES)
    chunk = sizes[CHUNK_ENV]
    if chunk is None:  # never: its default is a size
        chunk = DEFAULT_CHUNK_BYTES
    return ranks, slot, chunk, source, bad


def check_shm(ctx: Context) -> list[Finding]:
    d = shm_dir(ctx)
    where = f"{d} ({SHM_DIR_ENV})" if ctx.env.get(SHM_DIR_ENV) else d
    if not os.path.exists(d):
        fix = DOCKER_FIX if d == DEFAULT_SHM_DIR else f"create {d}, or unset {SHM_DIR_ENV} to use {DEFAULT_SHM_DIR}"
        return [Finding(CHECK_SHM, FAIL, f"{where} does not exist: shared-memory regions cannot be created", fix)]
    if not os.path.isdir(d):
        return [Finding(CHECK_SHM, FAIL, f"{where} is not a directory", f"point {SHM_DIR_ENV} at a tmpfs directory")]
    out: list[Finding] = []
    st = os.stat(d)
    if not os.access(d, os.W_OK | os.X_OK):
        out.append(
            Finding(
                CHECK_SHM,
                FAIL,
                f"{where} is not writable by uid {os.getuid()} (mode "
                f"{stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid})",
                f"sudo chmod 1777 {d}" if d == DEFAULT_SHM_DIR else f"chmod u+rwx {d}, or unset {SHM_DIR_ENV}",
            )
        )
    else:
        try:
            fd, probe = tempfile.mkstemp(prefix=".sagellm-doctor-", dir=d)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            out.append(
                Finding(
                    CHECK_SHM,
                    FAIL,
                    f"cannot create a file in {where}: {exc.strerror or exc}",
                    "remount it read-write and with free space (" + DOCKER_FIX + ")",
                )
            )
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        out.append(
            Finding(
                CHECK_SHM,
                WARN,
                f"{where} is world-writable without the sticky bit: any user can "
                "delete or replace another user's regions",
                f"sudo chmod 1777 {d}",
            )
        )

    mount = find_mount(d, ctx.proc)
    if mount is None:
        out.append(
            Finding(CHECK_SHM, INFO, f"cannot tell which file system holds {d} ({ctx.proc}/self/mountinfo unreadable)")
        )
    else:
        point, fstype, opts = mount
        if fstype == "tmpfs" or "dax" in opts.split(","):
            out.append(Finding(CHECK_SHM, OK, f"{d} is on {fstype} mounted at {point} ({opts})"))
        else:
            out.append(
                Finding(
                    CHECK_SHM,
                    WARN,
                    f"{d} is on {fstype} ({point}), not in memory: regions are "
                    "written back to disk and collectives through them are slow",
                    f"point {SHM_DIR_ENV} at a tmpfs such as /dev/shm, or mount one: "
                    f"sudo mount -t tmpfs -o size=1g tmpfs {d}",
                )
            )

    ranks, slot, chunk, source, bad = _sizes(ctx)
    out += bad
    vfs = os.statvfs(d)
    total, free = vfs.f_blocks * vfs.f_frsize, vfs.f_bavail * vfs.f_frsize
    need = group_bytes(ranks, slot, chunk)
    sized = (
        f"one {ranks}-rank shm group ({source}) needs about {fmt_bytes(need)} (slots {fmt_bytes(slot)}, "
        f"mailboxes {fmt_bytes(chunk)}), and every group of a job (world, TP, PP) has its own"
    )
    if free < need:
        out.append(
            Finding(
                CHECK_SHM,
                FAIL,
                f"{fmt_bytes(free)} free of {fmt_bytes(total)} in {d}; {sized}",
                f"{DOCKER_FIX}; or remove leftovers (see shm-leftovers), or lower {SLOT_ENV}",
            )
        )
    elif total < RECOMMENDED_SHM_BYTES:
        docker = " (Docker's default is 64 MiB)" if total <= 64 << 20 else ""
        out.append(
            Finding(
                CHECK_SHM,
                WARN,
                f"{d} holds only {fmt_bytes(total)}{docker}, {fmt_bytes(free)} free; "
                f"{sized}; NCCL's shm transport shares it. A full /dev/shm gives 'no available shared "
                "memory broadcast block' or a bus error (SIGBUS)",
                DOCKER_FIX,
            )
        )
    else:
        out.append(Finding(CHECK_SHM, OK, f"{fmt_bytes(free)} free of {fmt_bytes(total)} in {d}; {sized}"))
    return out


def check_shm_leftovers(ctx: Context) -> list[Finding]:
    d = shm_dir(ctx)
    try:
        names = sorted(n for n in os.listdir(d) if n.startswith(REGION_PREFIX))
    except OSError as exc:
        return [Finding(CHECK_LEFTOVERS, INFO, f"cannot list {d}: {exc.strerror or exc}")]
    now, uid = time.time(), os.getuid()
    stale: list[tuple[str, float]] = []
    fresh: list[tuple[str, float]] = []
    loose: list[tuple[str, int]] = []
    foreign: set[int] = set()
    held = 0
    for name in names:
        try:
            st = os.lstat(os.path.join(d, name))
        except OSError:
            continue  # unlinked meanwhile: a job finished its setup
        if not stat.S_ISREG(st.st_mode):
            continue
        age = now - st.st_mtime
        (stale if age > ctx.stale_after_s else fresh).append((name, age))
        if age > ctx.stale_after_s:
            held += st.st_blocks * 512
            if st.st_uid != uid:
                foreign.add(st.st_uid)
        if stat.S_IMODE(st.st_mode) & 0o077:
            loose.append((name, stat.S_IMODE(st.st_mode)))
    out: list[Finding] = []
    if stale:
        shown = ", ".join(n for n, _ in stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
        oldest = max(a for _, a in stale)
        minutes = max(1, int(ctx.stale_after_s // 60))
        fix = (
            f"if no job on this host is starting right now: find {d} -maxdepth 1 -name '{REGION_PREFIX}*' "
            f'-user "$(id -un)" -mmin +{minutes} -delete'
        )
        if foreign:
            fix += f"; files of other users (uid {', '.join(map(str, sorted(foreign)))}) need them or sudo"
        out.append(
            Finding(
                CHECK_LEFTOVERS,
                WARN,
                f"{len(stale)} leftover region file(s) in {d} holding "
                f"{fmt_bytes(held)}, oldest {fmt_age(oldest)}: {shown}. Regions are unlinked as soon "
                "as every rank mapped them, so these are from jobs that died during group setup",
                fix,
            )
        )
    if fresh:
        out.append(
            Finding(
                CHECK_LEFTOVERS,
                INFO,
                f"{len(fresh)} region file(s) younger than "
                f"{fmt_age(ctx.stale_after_s)} in {d}: a job is setting up a group now",
            )
        )
    if loose:
        shown = ", ".join(f"{n} ({m:04o})" for n, m in loose[:3])
        out.append(
            Finding(
                CHECK_LEFTOVERS,
                WARN,
                f"{len(loose)} region file(s) other users can open: {shown}; sagellm-comm creates them 0600",
                f"chmod 600 {d}/{REGION_PREFIX}* (or delete them)",
            )
        )
    if not names:
        out.append(Finding(CHECK_LEFTOVERS, OK, f"no {REGION_PREFIX}* files in {d}"))
    return out
