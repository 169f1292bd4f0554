"""Database.write / read: locks and lost connections become DatabaseUnavailable (503), on both backends.

The lean insert paths use the driver's own cursor, so its errors arrive unwrapped
by SQLAlchemy; they must be told apart the same way.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from console.store.db import DatabaseUnavailable


def _driver_error(db, name: str, message: str) -> Exception:
    return getattr(db.engine.dialect.dbapi, name)(message)


def test_a_driver_level_lock_or_lost_connection_is_retried_then_unavailable(db):
    calls = []
    message = "database is locked" if db.dialect == "sqlite" else "server closed the connection unexpectedly"

    def work(session):
        calls.append(1)
        raise _driver_error(db, "OperationalError", message)

    with pytest.raises(DatabaseUnavailable):
        db.write(work, attempts=2)
    assert len(calls) == 2


def test_a_driver_level_constraint_error_is_not_a_503(db):
    def work(session):
        raise _driver_error(db, "IntegrityError", "UNIQUE constraint failed")

    with pytest.raises(db.engine.dialect.dbapi.IntegrityError):
        db.write(work, attempts=3)


@pytest.mark.parametrize("backend", ["sqlite"])  # "database is locked" is SQLite's wording
def test_a_transient_error_then_success_commits_once(db, backend):
    attempts = []

    def work(session):
        attempts.append(1)
        if len(attempts) == 1:
            raise _driver_error(db, "OperationalError", "database is locked")
        session.execute(text("INSERT INTO ingest_counts (outcome, records) VALUES ('accepted', 7)"))
        return "done"

    assert db.write(work) == "done"
    with db.read() as session:
        assert session.execute(text("SELECT records FROM ingest_counts")).scalar_one() == 7


def test_reads_map_driver_level_trouble_too(db):
    with pytest.raises(DatabaseUnavailable):
        with db.read():
            raise _driver_error(db, "OperationalError", "database is locked")


@pytest.mark.parametrize("mmap_bytes", ["268435456", "0"])
def test_sqlite_connections_read_through_the_configured_memory_map(tmp_path, mmap_bytes):
    from console.core.settings import load_settings
    from console.store.db import Database

    db = Database(
        load_settings({"TELEMETRY_DB_PATH": str(tmp_path / "t.sqlite"), "TELEMETRY_DB_MMAP_BYTES": mmap_bytes})
    )
    try:
        with db.read() as session:
            assert session.execute(text("PRAGMA mmap_size")).scalar_one() == int(mmap_bytes)
    finally:
        db.dispose()


@pytest.mark.parametrize("backend", ["sqlite"])  # the group commit's driver-level transaction
def test_a_driver_transaction_retries_a_lock_and_commits_once(db, backend):
    attempts = []

    def work(cursor):
        attempts.append(1)
        cursor.execute("INSERT INTO ingest_counts (outcome, records) VALUES ('accepted', 7)")
        if len(attempts) == 1:
            raise _driver_error(db, "OperationalError", "database is locked")
        return "done"

    assert db.write_driver(work) == "done"
    with db.read() as session:
        assert session.execute(text("SELECT records FROM ingest_counts")).scalar_one() == 7  # the first rolled back


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_failed_driver_transaction_leaves_nothing_and_no_open_transaction(db, backend):
    def work(cursor):
        cursor.execute("INSERT INTO ingest_counts (outcome, records) VALUES ('accepted', 7)")
        raise _driver_error(db, "IntegrityError", "UNIQUE constraint failed")

    for _ in range(3):  # the pooled connection comes back usable each time
        with pytest.raises(db.engine.dialect.dbapi.IntegrityError):
            db.write_driver(work)

    def locked(cursor):
        raise _driver_error(db, "OperationalError", "database is locked")

    with pytest.raises(DatabaseUnavailable):
        db.write_driver(locked, attempts=2)
    assert db.write_driver(lambda cursor: cursor.execute("SELECT 1").fetchone()[0]) == 1
    with db.read() as session:
        assert session.execute(text("SELECT count(*) FROM ingest_counts")).scalar_one() == 0
