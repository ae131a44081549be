"""Regions carved out of one memory device shared by every rank: a CXL DAX device (``/dev/daxX.Y``), a file on
memory bound to a CXL NUMA node, or a UB segment mapped through its driver's device node.

The device is not created or unlinked: the job owns it (or the window ``[offset, offset + size)`` of it) for its
lifetime. Groups get consecutive windows in creation order; since every rank creates groups in the same order (the
``create_group`` rule) and every rank reserves a window for every group, member or not, with a size every rank
computes alike (the largest the group could need), every rank computes the same window without talking to the
others. Windows are aligned to 2 MiB, the alignment device DAX requires for ``mmap``.
"""

from __future__ import annotations

import mmap
import os
import stat

from sagellm_comm.errors import InvalidArgumentError
from sagellm_comm_cxl_ub.regions.base import Region, RegionProvider

__all__ = ["ALIGN", "DeviceRegionProvider", "device_size"]

ALIGN = 2 << 20


def device_size(path: str) -> int:
    """Bytes a device or file can map: a DAX character device reports it in sysfs, a file by its length."""
    st = os.stat(path)
    if stat.S_ISCHR(st.st_mode):
        name = os.path.basename(os.path.realpath(path))
        for sysfs in (f"/sys/bus/dax/devices/{name}/size", f"/sys/class/dax/{name}/size"):
            try:
                with open(sysfs) as f:
                    return int(f.read().strip())
            except (OSError, ValueError):
                continue
        raise InvalidArgumentError(f"cannot tell the size of character device {path}: no dax sysfs entry")
    return st.st_size


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class DeviceRegionProvider(RegionProvider):
    def __init__(self, path: str, offset: int = 0, kind: str = "cxl-device", host_local: bool = False) -> None:
        self.path = path
        self.base = offset
        self.kind = kind
        self.host_local = host_local
        self._next = _align(offset)
        self._windows: dict[int, tuple[int, int]] = {}  # group index -> (start, bytes)

    def available(self) -> tuple[bool, str]:
        if not os.path.exists(self.path):
            return False, f"{self.path} does not exist"
        if not os.access(self.path, os.R_OK | os.W_OK):
            return False, f"{self.path} is not readable and writable by this user"
        try:
            size = device_size(self.path)
        except (OSError, InvalidArgumentError) as exc:
            return False, str(exc)
        return True, f"regions are windows of {self.path} ({size >> 20} MiB from offset {self.base})"

    def reserve(self, index: int, size: int) -> None:
        if index not in self._windows:
            self._windows[index] = (self._next, size)
            self._next = _align(self._next + size)

    def _window(self, size: int, index: int) -> int:
        if index not in self._windows:
            raise InvalidArgumentError(f"group {index} has no window of {self.path}: reserve() it on every rank first")
        start, reserved = self._windows[index]
        if size > reserved:
            raise InvalidArgumentError(
                f"group {index} needs {size} bytes but its window of {self.path} holds {reserved}"
            )
        total = device_size(self.path)
        if start + size > total:
            raise InvalidArgumentError(
                f"{self.path} holds {total} bytes; group {index} needs [{start}, {start + size}): give a larger "
                "device or lower SAGELLM_COMM_SHM_SLOT_BYTES"
            )
        return start

    def _map(self, size: int, index: int) -> Region:
        start = self._window(size, index)
        page = start // mmap.ALLOCATIONGRANULARITY * mmap.ALLOCATIONGRANULARITY
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            mapping = mmap.mmap(
                fd, size + (start - page), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=page
            )
        finally:
            os.close(fd)
        return Region(handle=f"{self.path}@{start}", size=size, mapping=mapping, offset=start - page)

    def create(self, key: str, size: int, index: int) -> Region:
        return self._map(size, index)

    def attach(self, handle: str, size: int, index: int) -> Region:
        region = self._map(size, index)
        if region.handle != handle:
            raise InvalidArgumentError(
                f"group {index} maps {region.handle} here but {handle} on its rank 0: ranks created groups in a "
                "different order or were given different devices/offsets"
            )
        return region

    def describe(self) -> str:
        return f"{self.kind} {self.path}"
