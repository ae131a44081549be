"""Result files: ``<op>_ws<N>_<YYYYmmdd_HHMMSS>.json`` and ``.csv`` in the output directory.

The directory is checked (created, written to) before any rank starts, and every file is written to a
temporary name in the same directory and renamed into place, so a failed or interrupted run leaves either the
complete files or none.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sagellm_comm.benchmark.records import FIELDS
from sagellm_comm.errors import InvalidArgumentError

__all__ = ["SCHEMA", "atomic_write", "check_output_dir", "result_doc", "versions", "write_results"]

SCHEMA = "sagellm-comm/collective-benchmark/1"


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` if needed and prove a file can be written there; InvalidArgumentError (one line) if not."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InvalidArgumentError(f"output dir {str(p)!r} is not writable: {exc.strerror or exc}") from None
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Any], None], *, binary: bool = False) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", newline=None if binary else "") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it owner-only; a result file is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def versions() -> dict[str, str]:
    import torch

    from sagellm_comm import __version__

    return {"sagellm_comm": __version__, "torch": torch.__version__, "python": platform.python_version()}


def result_doc(
    op: str, world_size: int, rows: Sequence[dict[str, Any]], config: dict[str, Any], schema: str = SCHEMA
) -> dict[str, Any]:
    return {
        "schema": schema,
        "op_type": op,
        "world_size": world_size,
        "config": config,
        "versions": versions(),
        "results": list(rows),
    }


def _csv_text(rows: Sequence[dict[str, Any]], fields: Sequence[str] = FIELDS) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in fields})
    return buf.getvalue()


def _free_stem(folder: Path, stem: str) -> str:
    """``stem``, or ``stem_2``, ``stem_3``... if a result of that name already exists (two runs in one second)."""
    candidate, i = stem, 1
    while (folder / f"{candidate}.json").exists() or (folder / f"{candidate}.csv").exists():
        i += 1
        candidate = f"{stem}_{i}"
    return candidate


def write_results(
    output_dir: str | os.PathLike[str],
    op: str,
    world_size: int,
    rows: Sequence[dict[str, Any]],
    config: dict[str, Any],
    stamp: datetime,
    *,
    fields: Sequence[str] = FIELDS,
    schema: str = SCHEMA,
    prefix: str = "",
) -> tuple[Path, Path]:
    """Write the JSON and CSV of one op (``fields``: the CSV's columns); returns their paths."""
    folder = Path(output_dir)
    stem = _free_stem(folder, f"{prefix}{op}_ws{world_size}_{stamp.strftime('%Y%m%d_%H%M%S')}")
    doc = result_doc(op, world_size, rows, config, schema)
    text = _csv_text(rows, fields)
    json_path = atomic_write(folder / f"{stem}.json", lambda f: f.write(json.dumps(doc, indent=2) + "\n"))
    csv_path = atomic_write(folder / f"{stem}.csv", lambda f: f.write(text))
    return json_path, csv_path
