"""Group commit: concurrent single-run inserts of one worker share one transaction.

Each request thread validates its record and prepares the column values, hands
them to the worker's writer thread and waits. The writer takes everything that
is pending, inserts it with one statement in one write transaction, commits,
and only then wakes each request with its own outcome (created or duplicate).
One fsync serves many requests; no request is answered before its commit.

On SQLite that transaction only inserts: the rollups and the search index are
left to the insert watermark's catch-up (console/store/watermark.py), which the writer
runs after every few hundred runs and when it goes idle. Counting and indexing a
group of runs cost a third of its short transaction (most of it I/O: pages of
six rollup tables and the search index written twice, journal and file); caught
up a few hundred at a time, they cost a hundredth. Reads of the rollups catch up
first, so no answer misses a run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Optional

from console.domain import runs
from console.domain.records import run_values
from console.domain.validation import RunCreate
from console.store import watermark
from console.store.db import Database, DatabaseUnavailable
from console.store.runstore import driver_rows, set_columns
from console.store.writelock import queued_write

# The writer thread ends after this long without work (a new request restarts it).
IDLE_SECONDS = 10.0
# At most this many runs in one transaction.
MAX_GROUP = 512
# How long the writer waits for the clients its last commit released, and for
# requests still being parsed, so that they join this commit rather than the next.
LINGER_SECONDS = 0.005
# SQLite: the writer catches up the runs it left uncounted after this many, or when
# it has had nothing to write for this long.
CATCH_UP_RUNS = 256
CATCH_UP_IDLE_SECONDS = 0.05

_setup_lock = threading.Lock()
log = logging.getLogger("console.domain.group_commit")


class _Waiter:
    __slots__ = ("row", "done", "created", "error")

    def __init__(self, row: Mapping[str, Any]):
        self.row = row
        self.done = threading.Lock()
        self.done.acquire()
        self.created = False
        self.error: Optional[BaseException] = None


class GroupCommit:
    """One writer thread per process, fed by the request threads."""

    def __init__(self, db: Database):
        self._db = db
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[_Waiter] = []
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()
        self._arriving = 0
        self._uncounted = 0  # runs this writer inserted above the watermark since its last catch-up

    def arrive(self) -> None:
        """A request that will insert has started (it is being parsed and validated)."""
        with self._cond:
            self._arriving += 1

    def leave(self) -> None:
        """An arrived request ended without inserting (for example a 422)."""
        with self._cond:
            self._arriving = max(0, self._arriving - 1)
            self._cond.notify()

    def insert(self, row: Mapping[str, Any], *, arrived: bool = False) -> bool:
        """Insert prepared run values; True when created, False for a stored event_id."""
        waiter = _Waiter(row)
        with self._cond:
            if self._pid != os.getpid():  # forked after use: the thread did not come along
                self._pid, self._thread, self._arriving, self._uncounted = os.getpid(), None, 0, 0
            if arrived:
                self._arriving = max(0, self._arriving - 1)
            self._pending.append(waiter)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                self._thread.start()
            else:
                self._cond.notify()
        waiter.done.acquire()
        if waiter.error is not None:
            raise waiter.error
        return waiter.created

    def _run(self) -> None:
        expected = 0
        while True:
            with self._cond:
                if not self._wait_for_work():
                    self._thread = None
                    return
                group = self._gather(expected) if self._pending else []
            if group:
                self._commit(group)
            if self._uncounted >= (CATCH_UP_RUNS if group else 1):
                self._catch_up()
            with self._cond:
                expected = len(self._pending) + len(group)

    def _wait_for_work(self) -> bool:
        """Wait (holding the condition) for pending runs, or until the writer is idle
        with runs to catch up; False when it has been idle long enough to end."""
        while not self._pending:
            if self._uncounted:
                if not self._cond.wait(CATCH_UP_IDLE_SECONDS) and not self._pending:
                    return True
            elif not self._cond.wait(IDLE_SECONDS) and not self._pending:
                return False
        return True

    def _gather(self, expected: int) -> list[_Waiter]:
        """The next group (holding the condition).

        The clients a commit releases usually send their next run at once; waiting a
        moment for them (and for requests still being parsed) merges them into the
        next group instead of leaving two half-size groups to alternate.
        """
        wanted = min(MAX_GROUP, expected)
        deadline = time.monotonic() + LINGER_SECONDS
        while len(self._pending) < MAX_GROUP and (self._arriving or len(self._pending) < wanted):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
        return group

    def _commit(self, group: list[_Waiter]) -> None:
        try:
            self._apply(group)
        except DatabaseUnavailable as exc:
            for waiter in group:
                waiter.error = exc
        except Exception as exc:  # noqa: BLE001 - handed to the request threads
            if len(group) == 1:
                group[0].error = exc
            else:
                # Something in the group failed unexpectedly: give each its own transaction,
                # so that one bad record cannot fail the others.
                for waiter in group:
                    try:
                        self._apply([waiter])
                    except Exception as alone:  # noqa: BLE001 - handed to the request thread
                        waiter.error = alone
        finally:
            for waiter in group:
                waiter.done.release()

    def _apply(self, group: list[_Waiter]) -> None:
        first: dict[str, _Waiter] = {}
        for waiter in group:
            first.setdefault(waiter.row["event_id"], waiter)
        rows = [waiter.row for waiter in first.values()]
        if self._db.dialect == "sqlite":
            columns = set_columns(rows, list(rows[0]))
            params = driver_rows(rows, columns)  # before the lock
            inserted = queued_write(
                self._db, lambda cursor: runs.insert_uncounted(cursor, columns, params), driver=True
            )
            self._uncounted += len(inserted)
        else:
            new = runs.prepare_new_runs(rows, self._db.dialect)
            inserted = queued_write(self._db, lambda session: runs.insert_new_runs(session, new))
        for event_id, waiter in first.items():
            waiter.created = event_id in inserted

    def _catch_up(self) -> None:
        try:
            queued_write(self._db, watermark.catch_up)
        except Exception:  # noqa: BLE001 - the runs are stored: the next write, read or reconcile counts them
            log.warning("catching up the insert watermark failed; the next write or read will", exc_info=True)
        # Not retried from here: with the database down, this writer would try again
        # every idle moment and never end.
        self._uncounted = 0


def committer(app: Any) -> GroupCommit:
    """The app's (this worker's) group commit; `app` is the Flask app, read only for its `extensions`."""
    found = app.extensions.get("telemetry_group_commit")
    if found is None:
        with _setup_lock:
            found = app.extensions.setdefault("telemetry_group_commit", GroupCommit(app.extensions["telemetry_db"]))
    return found


def create_run(app: Any, record: RunCreate, *, arrived: bool = False) -> bool:
    """Store one run through the app's group commit; True when created."""
    return committer(app).insert(run_values(record), arrived=arrived)
