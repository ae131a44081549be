"""``python -m sagellm_comm_topology.record DEST``: record the files discovery reads on this machine below DEST.

The result is a fixture tree (``DEST/sys/...``, ``DEST/proc/...``) that ``discover_host(DEST)`` reads back to the
same topology; what NVML reports (or why it is missing) is saved as ``DEST/nvml.json``. ``/etc/machine-id`` is
never copied.
"""

from __future__ import annotations

import argparse
import json
import sys

from sagellm_comm_topology.local import NVML_SNAPSHOT_FILE, discover_host
from sagellm_comm_topology.sources import SourceMissing, nvml
from sagellm_comm_topology.sysroot import RecordingRoot

__all__ = ["main", "record"]


def record(dest: str) -> RecordingRoot:
    root = RecordingRoot(dest)
    root.read("/proc/sys/kernel/hostname")
    discover_host(root)
    try:
        snapshot = nvml.capture_snapshot()
    except SourceMissing as exc:
        snapshot = {"source": "nvml", "unavailable": str(exc)}  # replayed as the same reason
    with open(f"{dest}/{NVML_SNAPSHOT_FILE}", "w") as f:
        json.dump(snapshot, f, indent=2)
        f.write("\n")
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sagellm_comm_topology.record", description=__doc__)
    p.add_argument("dest", help="directory to record into")
    args = p.parse_args(argv)
    root = record(args.dest)
    print(f"recorded {len(root.recorded)} files below {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
