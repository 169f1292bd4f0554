"""Hand SQLite's write lock from process to process in arrival order.

Two workers writing one SQLite file otherwise meet in SQLite's busy handler, which
sleeps up to 100 ms between polls; an flock on `{db}.write.lock` (the same file the
group commit of single POSTs uses) wakes the next writer as soon as the lock is
free. BEGIN IMMEDIATE still guards correctness for writers that do not take it.
A no-op on PostgreSQL.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable
from typing import TypeVar

from .db import Database

T = TypeVar("T")
_guard = threading.Lock()
_thread_locks: dict[str, threading.Lock] = {}


def queued_write(db: Database, work: Callable[..., T]) -> T:
    """`db.write(work)`, after waiting our turn for the file's write lock (SQLite)."""
    if not db.settings.is_sqlite:
        return db.write(work)
    path = db.settings.lock_path("write")
    key = str(path)
    with _guard:
        lock = _thread_locks.setdefault(key, threading.Lock())
    with lock:  # one thread of this process at a time holds the file lock
        with open(path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                return db.write(work)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
