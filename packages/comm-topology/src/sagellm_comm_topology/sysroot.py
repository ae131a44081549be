"""Reading a system tree (``/sys``, ``/proc``, ``/dev``, ``/etc``) below a root path, failing soft.

Every discovery source reads through a :class:`SysRoot`, so the same code runs on the live system (root ``/``) and
on a recorded tree (``tests/topology/fixtures/<name>/``). :class:`RecordingRoot` copies every file and symlink a
discovery reads into a destination tree: ``python -m sagellm_comm_topology.record DEST`` records this machine.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["RecordingRoot", "SysRoot", "parse_cpulist"]


def parse_cpulist(text: str) -> list[int]:
    """``"0-3,8,10-11"`` -> ``[0, 1, 2, 3, 8, 10, 11]`` (the kernel's cpulist/nodelist format)."""
    out: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        else:
            out.append(int(part))
    return out


class SysRoot:
    """Files below ``root``, addressed by their absolute system path (``"/sys/class/net"``)."""

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(root)

    @property
    def is_live(self) -> bool:
        return self.root.resolve() == Path("/")

    def path(self, sys_path: str) -> Path:
        return self.root / sys_path.lstrip("/")

    def exists(self, sys_path: str) -> bool:
        return self.path(sys_path).exists()

    def listdir(self, sys_path: str) -> list[str]:
        """Sorted entries of a directory; [] if it is missing or unreadable."""
        try:
            return sorted(os.listdir(self.path(sys_path)))
        except OSError:
            return []

    def read(self, sys_path: str) -> str | None:
        """The stripped text of a file, or None if it is missing or unreadable (sysfs answers EINVAL for some
        attributes, e.g. the speed of a link that is down)."""
        try:
            return self.path(sys_path).read_text(errors="replace").strip()
        except OSError:
            return None

    def read_int(self, sys_path: str, base: int = 10) -> int | None:
        text = self.read(sys_path)
        if text is None:
            return None
        try:
            return int(text, base)
        except ValueError:
            return None

    def link_name(self, sys_path: str) -> str | None:
        """The last component a symlink points to (a driver's name), or None."""
        try:
            return os.path.basename(os.readlink(self.path(sys_path)))
        except OSError:
            return None

    def real(self, sys_path: str) -> str | None:
        """The system path a symlink resolves to (``/sys/devices/pci0000:00/...``), or None if missing."""
        p = self.path(sys_path)
        if not p.exists():
            return None
        try:
            rel = os.path.relpath(os.path.realpath(p), os.path.realpath(self.root))
        except ValueError:
            return None
        return "/" + rel if not rel.startswith("..") else None


class RecordingRoot(SysRoot):
    """A live ``SysRoot`` that also copies every file it reads (and every symlink on the way) below ``dest``."""

    # read but never copied: identifiers of this machine that a recorded tree must not carry
    PRIVATE = frozenset({"/etc/machine-id"})

    def __init__(self, dest: str | os.PathLike[str], root: str | os.PathLike[str] = "/") -> None:
        super().__init__(root)
        self.dest = Path(dest)
        self.recorded: set[str] = set()

    def _copy_links(self, sys_path: str) -> None:
        """Recreate each symlinked component of ``sys_path`` in the destination (relative targets only)."""
        parts = Path(sys_path.lstrip("/")).parts
        for i in range(1, len(parts) + 1):
            rel = Path(*parts[:i])
            src = self.root / rel
            if src.is_symlink():
                target = os.readlink(src)
                dst = self.dest / rel
                if not os.path.isabs(target) and not dst.is_symlink() and not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(target, dst)
                real = os.path.relpath(os.path.realpath(src), os.path.realpath(self.root))
                self._copy_links("/" + real)  # the target's own path may go through links too

    def _dest_of(self, sys_path: str) -> Path:
        real = os.path.relpath(os.path.realpath(self.path(sys_path)), os.path.realpath(self.root))
        return self.dest / real

    def read(self, sys_path: str) -> str | None:
        text = super().read(sys_path)
        if text is not None and sys_path not in self.recorded and sys_path not in self.PRIVATE:
            self.recorded.add(sys_path)
            self._copy_links(sys_path)
            dst = self._dest_of(sys_path)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(text + "\n")
        return text

    def listdir(self, sys_path: str) -> list[str]:
        names = super().listdir(sys_path)
        if names:
            self._copy_links(sys_path)
            self._dest_of(sys_path).mkdir(parents=True, exist_ok=True)
        return names

    def link_name(self, sys_path: str) -> str | None:
        name = super().link_name(sys_path)
        if name is not None:
            self._copy_links(sys_path)
        return name

    def real(self, sys_path: str) -> str | None:
        real = super().real(sys_path)
        if real is not None:
            self._copy_links(sys_path)
            self._dest_of(sys_path).mkdir(parents=True, exist_ok=True)
        return real

    def exists(self, sys_path: str) -> bool:
        ok = super().exists(sys_path)
        if ok:
            self._copy_links(sys_path)
            d = self._dest_of(sys_path)
            if self.path(sys_path).is_dir():
                d.mkdir(parents=True, exist_ok=True)
        return ok

    def copy_file(self, sys_path: str) -> None:
        """Copy one file verbatim (for files read by another library)."""
        src = self.path(sys_path)
        if src.is_file():
            dst = self._dest_of(sys_path)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
