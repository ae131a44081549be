"""Rich consoles for the CLI: a wide one when output is not a terminal, so pipes and tests get whole lines."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console

PIPE_WIDTH = 200


def make_console(file: TextIO | None = None) -> Console:
    stream = sys.stdout if file is None else file
    isatty = getattr(stream, "isatty", lambda: False)()
    return Console(file=stream, width=None if isatty else PIPE_WIDTH, highlight=False, soft_wrap=False)
