"""A change stamp: a value that stays equal between two reads only if nothing was
committed to the database in between, by any connection, process or host.

- SQLite: `PRAGMA data_version` on a connection of this process's own that never
  writes. It moves on every commit of any other connection (ours included), in
  DELETE and WAL mode alike. Its numbers mean something only on that connection, so
  the stamp carries the connection's serial: a forked worker or a reopened
  connection never matches a stamp taken before.
- PostgreSQL: `pg_current_snapshot()`. Two statements that see the same snapshot see
  the same committed data: its xmax only grows, and with xmax unchanged a commit or
  an abort can only leave the in-progress list, which then differs.

None means "unknown" (an in-memory SQLite file, a stamp that could not be read): a
caller never keeps an answer under it.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
from collections.abc import Hashable
from typing import Optional

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

_serials = itertools.count(1)


class ChangeStamp:
    """stamp(session) -> a hashable value, or None; see the module's docstring."""

    def __init__(self, engine: Engine, *, busy_timeout_ms: int = 5000):
        self._dialect = engine.dialect.name
        database = engine.url.database or ""
        self._path = None if database in ("", ":memory:") or database.startswith("file::memory:") else database
        self._timeout = busy_timeout_ms / 1000
        self._lock = threading.Lock()
        self._conn: Optional[sqlite3.Connection] = None
        self._owner = (0, 0)  # (pid, serial) of self._conn

    def __call__(self, session: Session) -> Optional[Hashable]:
        if self._dialect == "postgresql":
            return session.execute(text("SELECT pg_current_snapshot()::text")).scalar_one()
        if self._dialect != "sqlite" or self._path is None:
            return None
        with self._lock:
            try:
                conn = self._connection()
                (version,) = conn.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error:
                self._close()
                return None
            return (*self._owner, version)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._owner[0] != os.getpid():
            # After a fork the parent's connection is not ours to use (nor to close).
            self._conn = sqlite3.connect(self._path, timeout=self._timeout, check_same_thread=False,
                                         isolation_level=None)
            self._owner = (os.getpid(), next(_serials))
        return self._conn

    def _close(self) -> None:
        if self._conn is not None and self._owner[0] == os.getpid():
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
        self._conn, self._owner = None, (0, 0)

    def close(self) -> None:
        with self._lock:
            self._close()
