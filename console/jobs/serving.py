"""The serving lock: a serving console holds a shared lock on `{db_path}.serving.lock`.

`restore` takes it exclusively (without waiting) and so refuses while any console
serves that database; only that target's lock counts.
"""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path
from typing import IO

from console.core.settings import Settings

log = logging.getLogger("console.jobs.serving")
_held: list[IO[str]] = []


def serving_lock_path(settings: Settings, target: Path | None = None) -> Path:
    """The serving lock of `target` (a SQLite file), else of the configured database."""
    if target is not None:
        return Path(f"{target}.serving.lock")
    return settings.lock_path("serving")


def hold_serving_lock(settings: Settings) -> bool:
    """Take the shared serving lock for the life of this process (gunicorn master).

    A directory we cannot write must not stop the console from serving: then the
    lock is not held (restore cannot see this console) and a warning says so.
    """
    path = serving_lock_path(settings)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as exc:
        log.warning("serving lock %s not taken (%s): restore will not know this console serves", path, exc)
        return False
    fcntl.flock(handle, fcntl.LOCK_SH)  # waits only while a restore is replacing the file
    _held.append(handle)
    return True
