"""Progress of long command-line work: shown on a terminal, silent otherwise.

A job takes `progress: Progress` and calls it with one short line per step; the
scheduler passes nothing (`quiet`), and the CLI passes `terminal_progress()`, which
writes to stderr only when stderr is a terminal, so that scripts, pipes and cron
mail see only the JSON result on stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

Progress = Callable[[str], None]


def quiet(message: str) -> None:
    """Report nothing."""


def terminal_progress(stream: TextIO | None = None) -> Progress:
    """A reporter writing each step as a line to `stream` (stderr) when it is a terminal."""
    out = stream or sys.stderr
    if not out.isatty():
        return quiet

    def report(message: str) -> None:
        out.write(f"... {message}\n")
        out.flush()

    return report
