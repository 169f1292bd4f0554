"""Engines and transactions: SQLite pragmas, PostgreSQL pool, bounded retry on lock."""

from __future__ import annotations

import contextlib
import math
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from console.core.settings import Settings
from console.store.answer_cache import AnswerCache
from console.store.change_stamp import ChangeStamp

T = TypeVar("T")


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or stayed locked: answer 503 and retry later."""


def make_engine(settings: Settings, *, pool_size: int | None = None) -> Engine:
    """Create the engine for `settings`, configured for its dialect."""
    if settings.is_sqlite:
        path = settings.db_path
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            settings.database_url,
            connect_args={"timeout": settings.db_busy_timeout_ms / 1000, "check_same_thread": False},
            pool_size=pool_size or settings.api_threads,
            max_overflow=4,
            pool_pre_ping=False,
        )
        _configure_sqlite(engine, settings)
        return engine
    return create_engine(
        settings.database_url,
        pool_size=pool_size or settings.api_threads,
        max_overflow=2,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5, "application_name": "local-telemetry"},
    )


def make_plain_engine(settings: Settings) -> Engine:
    """An engine without pooling, for migrations and one-shot commands."""
    if settings.is_sqlite:
        settings.db_path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            settings.database_url,
            poolclass=NullPool,
            connect_args={"timeout": settings.db_busy_timeout_ms / 1000},
        )
        _configure_sqlite(engine, settings)
        return engine
    return create_engine(settings.database_url, poolclass=NullPool, connect_args={"connect_timeout": 5})


def _configure_sqlite(engine: Engine, settings: Settings) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # We issue BEGIN ourselves (below), so that writers can take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(settings.db_busy_timeout_ms)}")
        cursor.execute(f"PRAGMA journal_mode = {settings.db_journal_mode}")
        cursor.execute(f"PRAGMA synchronous = {settings.db_synchronous}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Triggers (rollup marks, search index) need statement journals: keep them in memory.
        cursor.execute("PRAGMA temp_store = MEMORY")
        # Reads through a memory map: another process's commit empties this connection's
        # page cache, and refetching pages from the map costs no system calls.
        cursor.execute(f"PRAGMA mmap_size = {int(settings.db_mmap_bytes)}")
        _ensure_math_functions(dbapi_connection, cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        # A deferred transaction that later writes can fail at once with "locked"
        # (busy_timeout does not apply to a lock upgrade); writers start IMMEDIATE.
        if connection.get_execution_options().get("telemetry_write"):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def _ensure_math_functions(connection, cursor) -> None:
    """The rollups' SQL puts durations into buckets with ln() and floor(), which SQLite
    has only when built with its math functions (Debian's is; some are not)."""
    try:
        cursor.execute("SELECT ln(2), floor(1.5)")
    except sqlite3.OperationalError:
        connection.create_function("ln", 1, math.log, deterministic=True)
        connection.create_function("floor", 1, math.floor, deterministic=True)


class Database:
    """One engine and its session factories, per app (per worker process)."""

    def __init__(self, settings: Settings, engine: Engine | None = None):
        self.settings = settings
        self.engine = engine or make_engine(settings)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(telemetry_write=True), expire_on_commit=False)
        self._stamp = ChangeStamp(self.engine, busy_timeout_ms=settings.db_busy_timeout_ms)
        # Answers read from the whole database, kept until the next commit anywhere.
        self.answers = AnswerCache(self._stamp, entries=settings.answer_cache_entries)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; rolled back at the end."""
        session = self._read()
        try:
            yield session
        except Exception as exc:
            if self.is_transient(exc):
                raise DatabaseUnavailable(describe_unavailable(exc)) from exc
            raise
        finally:
            _rollback(session)
            session.close()

    def write(self, work: Callable[[Session], T], *, attempts: int = 5) -> T:
        """Run `work(session)` in one write transaction and commit it.

        Retried (a bounded number of times, with jitter) when the database is
        locked or the connection dropped; then DatabaseUnavailable.
        """

        def once() -> T:
            session = self._write()
            try:
                result = work(session)
                session.commit()
                return result
            except BaseException:
                _rollback(session)
                raise
            finally:
                session.close()

        return self._retried(once, attempts)

    def write_driver(self, work: Callable[[sqlite3.Cursor], T], *, attempts: int = 5) -> T:
        """SQLite: `work(cursor)` in one BEGIN IMMEDIATE transaction on a pooled driver
        connection, committed; retried like `write`.

        For the group commit's one statement: a Session's begin, connection lookup and
        commit cost a tenth of the time that transaction holds the write lock.
        """

        def once() -> T:
            connection = self.engine.raw_connection()
            try:
                cursor = connection.driver_connection.cursor()
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    result = work(cursor)
                    cursor.execute("COMMIT")
                except BaseException:
                    if connection.driver_connection.in_transaction:
                        connection.driver_connection.rollback()
                    raise
                return result
            finally:
                connection.close()

        return self._retried(once, attempts)

    def _retried(self, once: Callable[[], T], attempts: int) -> T:
        """`once()`, again after a lock or a dropped connection (bounded, with jitter); then DatabaseUnavailable."""
        for attempt in range(attempts):
            try:
                return once()
            except BaseException as exc:
                if not self.is_transient(exc):
                    raise
                if attempt == attempts - 1:
                    raise DatabaseUnavailable(describe_unavailable(exc)) from exc
                time.sleep(min(0.05 * 2**attempt, 1.0) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def is_transient(self, exc: BaseException) -> bool:
        """True for a lock or a dropped connection, raised through SQLAlchemy or by the
        driver itself (the lean insert paths use the driver's cursor)."""
        if isinstance(exc, DBAPIError):
            return _transient(exc)
        if isinstance(exc, self.engine.dialect.dbapi.Error):
            return _transient(DBAPIError.instance(None, None, exc, self.engine.dialect.dbapi.Error))
        return False

    def dispose(self) -> None:
        self.answers.clear()
        self._stamp.close()
        self.engine.dispose()


def driver_cursor(session: Session):
    """The SQLite driver's cursor on the session's connection (inside its transaction).

    Statements sent straight to it skip SQLAlchemy's per-statement work, which cost
    more than SQLite's own for the few small statements of every write. One cursor
    per transaction (kept in `session.info`): looking up the connection costs too.
    """
    transaction = session.get_transaction()  # None between transactions: a new cursor then
    found = session.info.get("driver_cursor")
    if transaction is not None and found is not None and found[0] is transaction:
        return found[1]
    cursor = session.connection().connection.driver_connection.cursor()  # begins one if needed
    session.info["driver_cursor"] = (session.get_transaction(), cursor)
    return cursor


def _transient(exc: DBAPIError) -> bool:
    """True for errors that a retry may cure: a lock, a dropped connection."""
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    if "locked" in text or "busy" in text:
        return True
    # On PostgreSQL an OperationalError is a connection that failed or dropped.
    return isinstance(exc, OperationalError) and "sqlite" not in type(exc.orig).__module__


def _rollback(session: Session) -> None:
    """Roll back; on a connection that is already lost there is nothing to roll back."""
    try:
        session.rollback()
    except DBAPIError as exc:
        if not exc.connection_invalidated and not isinstance(exc, OperationalError):
            raise


def describe_unavailable(exc: BaseException) -> str:
    orig = getattr(exc, "orig", exc)
    text = str(orig).lower() if orig is not None else ""
    if "locked" in text or "busy" in text:
        return "the database is busy; retry shortly"
    return "the database is unavailable; retry shortly"
