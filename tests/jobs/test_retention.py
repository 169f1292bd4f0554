"""Retention: old runs and their events go, in batches; rollups stay true; ingest keeps going."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa

from console.core.timeutil import format_utc, utcnow
from console.jobs.retention import apply_retention
from console.store import reconcile
from console.store.db import Database
from console.store.models import agent_runs, audit_log, run_events
from tests.jobs.conftest import add_events, insert_runs, run_row


def count(db, table) -> int:
    with db.read() as session:
        return session.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_old_runs_and_their_events_are_deleted_and_new_ones_kept(db):
    now = utcnow()
    old = [run_row(created_at=now - timedelta(days=40, minutes=i)) for i in range(7)]
    new = [run_row(created_at=now - timedelta(days=29))] + [run_row(created_at=now, status="running")]
    insert_runs(db, old + new)
    add_events(db, old[0], 3)
    add_events(db, new[0], 2)

    report = apply_retention(db, 30, batch_size=3, now=now, pause=0)

    assert (report["runs_deleted"], report["events_deleted"], report["batches"]) == (7, 3, 3)
    with db.read() as session:
        left = set(session.execute(sa.select(agent_runs.c.event_id)).scalars())
        assert reconcile.stored_rollups(session) == reconcile.recompute_from_runs(session)
        (entry,) = session.execute(sa.select(audit_log).where(audit_log.c.actor == "retention")).mappings()
    assert left == {r["event_id"] for r in new}
    assert count(db, run_events) == 2
    assert entry["action"] == "retention.delete" and '"runs_deleted": 7' in entry["detail"]


def test_dry_run_counts_and_deletes_nothing(db):
    now = utcnow()
    rows = [run_row(created_at=now - timedelta(days=10)) for _ in range(4)]
    insert_runs(db, rows)
    add_events(db, rows[0], 5)
    report = apply_retention(db, 7, dry_run=True, now=now)
    assert (report["runs_to_delete"], report["events_to_delete"]) == (4, 5)
    assert count(db, agent_runs) == 4 and count(db, run_events) == 5


def test_zero_days_keeps_everything(db):
    insert_runs(db, [run_row(created_at=utcnow() - timedelta(days=4000))])
    assert apply_retention(db, 0)["runs_deleted"] == 0
    assert count(db, agent_runs) == 1


def seed_old_runs(db, total: int, created) -> None:
    """Insert `total` ended runs in one statement (fast), then rebuild the rollups."""
    if db.dialect == "sqlite":
        series = f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {total}) "
        source = "n"
    else:
        series, source = "", f"generate_series(1, {total}) AS n(i)"
    sql = (
        f"{series}INSERT INTO agent_runs (event_id, run_id, agent_name, job_type, status, start_time, created_at, "
        "updated_at, end_time, duration_ms, last_seen_at, schema_version) "
        f"SELECT 'old-' || i, 'old-' || i, 'agent-a', 'crawl', 'success', :t, :t, :t, :t, 1000, :t, 7 FROM {source}"
    )
    ts = agent_runs.c.created_at.type.process_bind_param(created, db.engine.dialect)

    def work(session):
        session.execute(sa.text(sql), {"t": ts})
        reconcile.rebuild(session)

    db.write(work)


# SQLite, where a writer locks the whole file, gets the full 200,000; PostgreSQL (row
# locks: deletes and inserts never wait on each other) a quarter of it, to keep the suite short.
LOAD = {"sqlite": 200_000, "postgresql": 50_000}


def test_deleting_200k_rows_never_holds_up_ingest_for_a_second(db, backend, console_server):
    """200,000 old runs go while a real console keeps ingesting: no request fails or waits > 1 s."""
    now = utcnow()
    total = LOAD[backend]
    seed_old_runs(db, total, now - timedelta(days=90))
    latencies: list[float] = []
    failures: list[str] = []
    stop = threading.Event()

    def ingest():
        http = requests.Session()
        while not stop.is_set():
            body = {"event_id": str(uuid.uuid4()), "run_id": "live", "agent_name": "agent-a", "job_type": "crawl",
                    "start_time": format_utc(utcnow()), "status": "success"}
            started = time.monotonic()
            try:
                response = http.post(console_server.url + "/api/v1/runs", json=body, timeout=10)
                if response.status_code != 201:
                    failures.append(f"{response.status_code} {response.text[:200]}")
            except requests.RequestException as exc:
                failures.append(repr(exc))
            latencies.append(time.monotonic() - started)
            time.sleep(0.005)

    thread = threading.Thread(target=ingest)
    thread.start()
    try:
        report = apply_retention(db, 30, batch_size=5000, now=now)
    finally:
        stop.set()
        thread.join()
    print(f"\n[{backend}] retention of {total} rows: {report['seconds']} s, longest batch "
          f"{report['longest_batch_seconds']} s; {len(latencies)} ingest requests meanwhile, "
          f"slowest {max(latencies):.3f} s")
    assert report["runs_deleted"] == total and report["batches"] >= total // 5000
    assert not failures, failures[:5]
    assert len(latencies) > 20
    assert max(latencies) < 1.0
    assert count(db, agent_runs) == len(latencies)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_space_is_reported_and_handed_back_with_vacuum(make_settings):
    settings = make_settings()
    db = Database(settings)
    try:
        now = utcnow()
        seed_old_runs(db, 20_000, now - timedelta(days=400))
        report = apply_retention(db, 30, now=now, pause=0, vacuum=True)
        assert report["runs_deleted"] == 20_000
        assert report["bytes_freed"] > 1_000_000
        assert report["bytes_returned_to_os"] > 1_000_000
        assert report["file_bytes_after"] == settings.db_path.stat().st_size
    finally:
        db.dispose()
