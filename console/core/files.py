"""Modes of the files the console creates: owner only.

The database (and SQLite's -wal, -shm and -journal, which take the database file's
mode), backups, the secret key and the lock files hold run data or secrets. Under a
default umask (022) they would be world-readable; the console's processes clear the
group and other bits of their umask, so files are 0600 and directories 0700, or
stricter when the umask already asks for more.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PRIVATE_BITS = 0o077


def restrict_umask() -> int:
    """Add the group and other bits to this process's umask; return the new umask."""
    old = os.umask(PRIVATE_BITS)
    os.umask(old | PRIVATE_BITS)
    return old | PRIVATE_BITS


def temporary_sibling(final: Path, suffix: str) -> Path:
    """A new empty file (0600) beside `final`, under an unpredictable name."""
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    return Path(name)
