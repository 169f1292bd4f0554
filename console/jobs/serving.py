"""The serving lock: a serving console holds a shared lock on `{db_path}.serving.lock`.

`restore` takes it exclusively (without waiting) and so refuses while any console
serves that database; only that target's lock counts.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO

from ..settings import Settings

_held: list[IO[str]] = []


def serving_lock_path(settings: Settings, target: Path | None = None) -> Path:
    """The serving lock of `target` (a SQLite file), else of the configured database."""
    if target is not None:
        return Path(f"{target}.serving.lock")
    return settings.lock_path("serving")


def hold_serving_lock(settings: Settings) -> None:
    """Take the shared serving lock for the life of this process (gunicorn master)."""
    path = serving_lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    fcntl.flock(handle, fcntl.LOCK_SH)  # waits only while a restore is replacing the file
    _held.append(handle)


def try_exclusive(path: Path) -> IO[str] | None:
    """The serving lock taken exclusively, or None when a console holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
