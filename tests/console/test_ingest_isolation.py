"""One line the console cannot prepare, or the database refuses, is rejected alone.

The refused lines here are built past validation (a Line made by hand), so that the
database itself refuses them: a negative counter breaks the real CHECK constraint
`items_failed_nonnegative` on SQLite and PostgreSQL alike. Everything runs through
the public functions (parse_lines, prepare, ingest) on a real session.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid

import pytest
import sqlalchemy as sa

from console.domain.ingest import ingest, prepare
from console.domain.spool_lines import parse_lines
from tests.console.rollup_check import assert_rollups_match


def spool_line(kind: str, event_id: str, ts: str, data: dict | None = None) -> dict:
    return {"v": 1, "id": str(uuid.uuid4()), "kind": kind, "ts": ts, "event_id": event_id, "run_id": event_id,
            "agent_name": "agent", "job_type": "job", "start_time": "2026-01-12T10:00:00Z", "data": data or {}}


def parsed_with(good: list[dict], bad: list[dict], bad_data: dict):
    """The good lines parsed, and the bad ones parsed then given `bad_data` (past validation)."""
    lines, rejected = parse_lines(good + bad)
    assert not rejected
    return [
        dataclasses.replace(line, data=bad_data) if line.index >= len(good) else line for line in lines
    ], []


def stored(db, sql: str) -> list[tuple]:
    with db.read() as session:
        return [tuple(row) for row in session.execute(sa.text(sql)).all()]


def good_batch() -> list[dict]:
    return [
        spool_line("run_started", "iso-a", "2026-01-12T10:00:00Z", {"host": "box"}),
        spool_line("run_ended", "iso-a", "2026-01-12T10:05:00Z", {"status": "success", "items_succeeded": 3}),
        spool_line("run_started", "iso-b", "2026-01-12T10:00:00Z"),
        spool_line("event", "iso-b", "2026-01-12T10:01:00Z", {"event_type": "step", "payload": {"n": 1}}),
    ]


def test_a_line_the_database_refuses_is_rejected_and_the_others_are_applied(db):
    good = good_batch()
    bad = [spool_line("run_updated", "iso-b", "2026-01-12T10:02:00Z"),  # a run that the batch creates
           spool_line("run_updated", "iso-c", "2026-01-12T10:02:00Z")]  # a run of its own
    parsed = parsed_with(good, bad, {"items_failed": -1})
    result = db.write(lambda session: ingest(session, prepared=prepare(parsed, dialect=db.dialect)))

    assert result.accepted == 4 and result.duplicates == 0
    assert [r["index"] for r in result.rejected] == [4, 5]
    assert all("the database refused this line" in r["detail"] and "nonnegative" in r["detail"]
               for r in result.rejected), result.rejected
    assert "INSERT" not in str(result.rejected)  # the database's words, not the statement
    assert stored(db, "SELECT event_id, status, items_succeeded, items_failed FROM agent_runs ORDER BY event_id") == [
        ("iso-a", "success", 3, 0), ("iso-b", "running", 0, 0)]
    assert stored(db, "SELECT event_type FROM run_events") == [("step",)]
    counts = dict(stored(db, "SELECT outcome, records FROM ingest_counts"))
    assert counts == {"accepted": 4, "rejected": 2}
    assert_rollups_match(db)

    # The refused lines were not claimed: sent again they are refused again, not duplicates.
    again = db.write(lambda session: ingest(session, prepared=prepare(parsed, dialect=db.dialect)))
    assert (again.accepted, again.duplicates, [r["index"] for r in again.rejected]) == (0, 4, [4, 5])


def test_a_line_that_cannot_be_prepared_is_rejected_and_the_others_are_applied(db):
    good = good_batch()
    bad = [spool_line("commit", "iso-b", "2026-01-12T10:03:00Z", {"commit_hash": "abcdef1", "commit_source": "llm"})]
    parsed = parsed_with(good, bad, {"commit_source": "llm"})  # no commit_hash: folding it fails
    prepared = prepare(parsed, dialect=db.dialect)
    assert [(r["index"], r["detail"]) for r in prepared.rejected] == [(4, "the console could not prepare this line")]
    result = db.write(lambda session: ingest(session, prepared=prepared))
    assert result.accepted == 4 and len(result.rejected) == 1
    assert stored(db, "SELECT event_id, git_commit_hash FROM agent_runs ORDER BY event_id") == [
        ("iso-a", None), ("iso-b", None)]
    assert_rollups_match(db)


def test_a_fault_of_the_database_itself_fails_the_whole_batch(db):
    """A read-only database refuses every line: that is the database's fault, raised, not N rejections."""
    prepared = prepare(parse_lines(good_batch()), dialect=db.dialect)

    def read_only(session):
        if db.dialect == "sqlite":
            session.connection().exec_driver_sql("PRAGMA query_only = ON")
        else:
            session.connection().exec_driver_sql("SET TRANSACTION READ ONLY")
        try:
            return ingest(session, prepared=prepared)
        finally:
            if db.dialect == "sqlite":
                session.connection().exec_driver_sql("PRAGMA query_only = OFF")

    with pytest.raises((sa.exc.DBAPIError, sqlite3.Error)) as raised:  # the lean paths raise the driver's own
        db.write(read_only, attempts=1)
    assert "read" in str(raised.value).lower()
    assert stored(db, "SELECT count(*) FROM agent_runs") == [(0,)]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_read_only_database_answers_503_with_retry_after_and_stores_nothing(client, db, pg_database_url):
    """Every line refused alike is the database's fault: the request is retried, never the lines rejected."""
    name = sa.engine.make_url(pg_database_url).database
    admin = sa.create_engine(pg_database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # opened first: its own session stays writable
        conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        try:
            db.engine.dispose()  # new connections start read-only
            resp = client.post("/api/v1/ingest", json=good_batch())
        finally:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    admin.dispose()
    db.engine.dispose()
    assert resp.status_code == 503, resp.get_json()
    assert resp.headers["Retry-After"] and "retry" in resp.get_json()["detail"]
    assert stored(db, "SELECT count(*) FROM agent_runs") == [(0,)]
    assert client.post("/api/v1/ingest", json=good_batch()).get_json()["accepted"] == 4  # writable again
