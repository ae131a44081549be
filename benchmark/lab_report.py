"""What the netns benchmarks share: the lab (or why it cannot run here) and their report files."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["netns_or_none", "write_report"]


def netns_or_none(prog: str) -> Any:
    """The ``sagellm_comm_lab.netns`` module (from tools/), or None after printing why namespaces are unavailable."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from sagellm_comm_lab import netns

    reason = netns.unavailable_reason()
    if reason:
        print(f"{prog}: cannot run: {reason}")
        return None
    return netns


def write_report(output_dir: str, stem: str, text: str, record: dict[str, Any]) -> tuple[Path, Path]:
    """``<stem>_<timestamp>.md`` (the text) and ``.json`` (the record) in ``output_dir``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    md, js = out / f"{stem}_{stamp}.md", out / f"{stem}_{stamp}.json"
    md.write_text(text)
    js.write_text(json.dumps(record, indent=1))
    return md, js
