"""Regions as files in a directory of memory: ``/dev/shm`` (POSIX shared memory) or a CXL-backed mount.

A fresh file per group, named from a random key that group rank 0 draws and publishes through the rendezvous
store, so groups of one job (TP, PP) and independent jobs on one host never share a name. Files are created
``O_EXCL`` with mode 0600, their blocks reserved up front (``posix_fallocate``: a full ``/dev/shm`` fails at init
with a clear error instead of a SIGBUS mid-collective), and unlinked as soon as every rank has mapped them.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os

from sagellm_comm.errors import InvalidArgumentError
from sagellm_comm_cxl_ub.regions.base import Region, RegionProvider

__all__ = ["PREFIX", "DirectoryRegionProvider"]

PREFIX = "sagellm-comm-"


class DirectoryRegionProvider(RegionProvider):
    def __init__(self, directory: str, kind: str = "shm", host_local: bool = True) -> None:
        self.directory = directory
        self.kind = kind
        self.host_local = host_local

    def available(self) -> tuple[bool, str]:
        if not os.path.isdir(self.directory):
            return False, f"{self.directory} is not a directory"
        if not os.access(self.directory, os.W_OK | os.X_OK):
            return False, f"{self.directory} is not writable by this user"
        return True, f"regions are files in {self.directory}"

    def _path(self, key: str) -> str:
        if not key or "/" in key or key.startswith("."):
            raise InvalidArgumentError(f"bad region key {key!r}")
        return os.path.join(self.directory, PREFIX + key)

    def create(self, key: str, size: int, index: int) -> Region:
        path = self._path(key)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise OSError(
                        exc.errno,
                        f"cannot reserve {size} bytes in {self.directory} ({exc.strerror}); "
                        "free space there or lower SAGELLM_COMM_SHM_SLOT_BYTES",
                    ) from exc
                os.ftruncate(fd, size)
            mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        finally:
            os.close(fd)
        return Region(handle=path, size=size, mapping=mapping, unlink_path=path)

    def attach(self, handle: str, size: int, index: int) -> Region:
        if os.path.dirname(handle) != os.path.normpath(self.directory):
            raise InvalidArgumentError(f"region {handle!r} is not in {self.directory}")
        fd = os.open(handle, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if st.st_uid != os.getuid():
                raise PermissionError(f"{handle} belongs to uid {st.st_uid}, not to this user")
            if st.st_size < size:
                raise InvalidArgumentError(f"{handle} holds {st.st_size} bytes, the group needs {size}")
            mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        return Region(handle=handle, size=size, mapping=mapping, unlink_path=handle)

    def release_name(self, region: Region) -> None:
        if region.unlink_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(region.unlink_path)
