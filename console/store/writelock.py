"""Hand SQLite's write lock from process to process in arrival order.

Two workers writing one SQLite file otherwise meet in SQLite's busy handler, which
sleeps up to 100 ms between polls; an flock on `{db}.write.lock` (the same file the
group commit of single POSTs uses) wakes the next writer as soon as the lock is
free. BEGIN IMMEDIATE still guards correctness for writers that do not take it.
A no-op on PostgreSQL.

`shared=True`: the batches of one process that wait for the lock at the same
time are written in one transaction by whichever of their threads gets it first
(one commit, one lock hand-off, instead of one each). A batch that fails the
shared transaction for any reason but an unavailable database is retried alone,
so that it cannot fail the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, Optional, TypeVar

from console.core.locks import file_lock
from console.store.db import Database, DatabaseUnavailable

T = TypeVar("T")
_guard = threading.Lock()
_thread_locks: dict[str, threading.Lock] = {}
_waiting: dict[str, list[_Job]] = {}


class _Job(Generic[T]):
    __slots__ = ("work", "done", "result", "error")

    def __init__(self, work: Callable[[Any], T]):
        self.work = work
        self.done = False
        self.result: Any = None
        self.error: Optional[BaseException] = None


def queued_write(db: Database, work: Callable[[Any], T], *, shared: bool = False, driver: bool = False) -> T:
    """`db.write(work)`, after waiting our turn for the file's write lock (SQLite).

    `driver=True` (SQLite only, not shared): `db.write_driver(work)`, which hands
    `work` a driver cursor instead of a Session.
    """
    if not db.settings.is_sqlite:
        return db.write(work)
    write = db.write_driver if driver else db.write
    path = db.settings.lock_path("write")
    key = str(path)
    job = _Job(work)
    with _guard:
        lock = _thread_locks.setdefault(key, threading.Lock())
        if shared:
            _waiting.setdefault(key, []).append(job)
    with lock:  # one thread of this process at a time holds the file lock
        if not job.done:
            with file_lock(path):
                jobs = [job]
                if shared:  # everything that queued up while we waited for the file
                    with _guard:
                        jobs, _waiting[key] = _waiting[key], []
                _run(write, jobs)
    if job.error is not None:
        raise job.error
    return job.result


def _run(write: Callable[[Callable[[Any], Any]], Any], jobs: list[_Job]) -> None:
    """Write the jobs in one transaction; each gets its result or its error."""
    try:
        try:
            results = write(lambda session: [job.work(session) for job in jobs])
        except DatabaseUnavailable as exc:
            for job in jobs:
                job.error = exc
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].error = exc
            else:
                for job in jobs:  # one of them failed: each alone, so that it fails only itself
                    try:
                        job.result = write(job.work)
                    except Exception as alone:  # noqa: BLE001 - handed to the job's own thread
                        job.error = alone
        else:
            for job, result in zip(jobs, results, strict=True):
                job.result = result
    finally:
        for job in jobs:
            job.done = True
