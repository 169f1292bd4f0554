"""Retention: delete runs (with their events) older than N days, in short batches.

Each batch is its own write transaction of at most `batch_size` runs, with a pause
between batches, so that ingest never waits long for the lock. Rollups stay true
(console.store.rollups is told of every deleted row), and one audit_log entry says what
was deleted. SQLite space: freed pages go to the freelist and are reused; with
auto_vacuum=INCREMENTAL they are handed back to the OS, and with
TELEMETRY_RETENTION_VACUUM=true a full VACUUM follows (schedule it off-hours).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from console.core.progress import Progress, quiet
from console.core.settings import Settings
from console.core.timeutil import format_utc, utcnow
from console.jobs.tables import export_state
from console.store import rollups
from console.store.db import Database
from console.store.models import agent_runs, audit_log, commits, run_events

log = logging.getLogger("console.jobs.retention")

# Each delete transaction aims at this duration (ingest waits at most about this long):
# at 0.2 s, ingest's p99 during a retention of 1,000,000 runs at 10,000,000 was 386 ms.
BATCH_SECONDS = 0.1


def scheduled_retention(db: Database, settings: Settings) -> dict[str, Any]:
    """The scheduled job: apply TELEMETRY_RETENTION_DAYS."""
    return apply_retention(db, settings.retention_days, batch_size=settings.retention_batch_size,
                           vacuum=settings.retention_vacuum)


def apply_retention(db: Database, days: int, *, batch_size: int = 5000, dry_run: bool = False,
                    now: datetime | None = None, pause: float | None = None, vacuum: bool = False,
                    batch_seconds: float = BATCH_SECONDS, progress: Progress = quiet) -> dict[str, Any]:
    """Delete runs whose created_at is older than `days` (0: keep everything); return a report.

    A transaction deletes at most `batch_size` runs, fewer when the last batch took
    longer than `batch_seconds`, and the next starts only after `pause`, so a waiting
    writer gets the lock in between.
    """
    now = now or utcnow()
    report: dict[str, Any] = {"days": days, "dry_run": dry_run, "runs_deleted": 0, "events_deleted": 0, "batches": 0}
    if days <= 0:
        report["note"] = "retention is off (days = 0): everything is kept"
        return report
    cutoff = now - timedelta(days=days)
    report["cutoff"] = format_utc(cutoff)
    if dry_run:
        with db.read() as session:
            report["runs_to_delete"] = _count_old_runs(session, cutoff)
            report["events_to_delete"] = _count_old_events(session, cutoff)
        return report
    if pause is None:
        # SQLite's busy handler looks again at most every 100 ms: pause longer than that.
        pause = 0.12 if db.dialect == "sqlite" else 0.01
    before = _space(db)
    progress(f"retention: deleting runs created before {report['cutoff']}")
    started = time.monotonic()
    longest = 0.0
    limit = min(batch_size, 50)  # the first batch meets a cold cache: start small
    while True:
        batch_started = time.monotonic()
        runs, events = db.write(lambda s, n=limit: _delete_batch(s, cutoff, n))
        took = time.monotonic() - batch_started
        longest = max(longest, took)
        if not runs:
            break
        report["runs_deleted"] += runs
        report["events_deleted"] += events
        report["batches"] += 1
        log.debug("retention batch %d: %d runs, %d events in %.3f s", report["batches"], runs, events, took)
        progress(f"retention: {report['runs_deleted']} runs and {report['events_deleted']} events deleted "
                 f"({report['batches']} batches)")
        if runs < limit:
            break
        # Aim each transaction at `batch_seconds`, within [20, batch_size] runs: shrink at
        # once after a slow batch, grow by half at most after a fast one.
        limit = min(batch_size, max(20, int(limit * min(1.5, batch_seconds / max(took, 1e-3)))))
        time.sleep(pause)
    if report["runs_deleted"]:
        detail = json.dumps({k: report[k] for k in ("cutoff", "runs_deleted", "events_deleted")})
        db.write(lambda s: s.execute(audit_log.insert().values(
            at=utcnow(), actor="retention", action="retention.delete", detail=detail)))
    report["seconds"] = round(time.monotonic() - started, 3)
    report["longest_batch_seconds"] = round(longest, 3)
    if db.dialect == "sqlite":
        progress("retention: handing freed space back" if vacuum else "retention: measuring the freed space")
    report.update(_reclaim(db, before, vacuum))
    return report


def _count_old_runs(session: Session, cutoff: datetime) -> int:
    return session.execute(sa.select(sa.func.count()).where(agent_runs.c.created_at < cutoff)).scalar_one()


def _count_old_events(session: Session, cutoff: datetime) -> int:
    old = sa.select(agent_runs.c.event_id).where(agent_runs.c.created_at < cutoff)
    return session.execute(sa.select(sa.func.count()).where(run_events.c.event_id.in_(old))).scalar_one()


def _delete_batch(session: Session, cutoff: datetime, batch_size: int) -> tuple[int, int]:
    # Only what the rollups need of each row (fewer columns: a faster batch).
    rows = session.execute(
        sa.select(*(agent_runs.c[name] for name in ("id", "event_id", *rollups.ROLLED_COLUMNS)))
        .where(agent_runs.c.created_at < cutoff).order_by(agent_runs.c.created_at)
        .limit(batch_size)
    ).mappings().all()
    if not rows:
        return 0, 0
    ids = [row["id"] for row in rows]
    event_ids = [row["event_id"] for row in rows]
    # Explicit rather than by ON DELETE: correct even where foreign keys are off.
    events = session.execute(run_events.delete().where(run_events.c.event_id.in_(event_ids))).rowcount
    session.execute(export_state.delete().where(export_state.c.event_id.in_(event_ids)))
    session.execute(commits.update().where(commits.c.event_id.in_(event_ids)).values(event_id=None))
    with rollups.own_writes(session):
        session.execute(agent_runs.delete().where(agent_runs.c.id.in_(ids)))
        rollups.record_changes(session, [(row, None) for row in rows])
    return len(rows), events


def _space(db: Database) -> dict[str, int]:
    if db.dialect != "sqlite":
        return {}
    with db.read() as session:
        return {name: session.execute(sa.text(f"PRAGMA {name}")).scalar_one()
                for name in ("page_size", "page_count", "freelist_count", "auto_vacuum")}


def _reclaim(db: Database, before: dict[str, int], vacuum: bool) -> dict[str, Any]:
    """Hand freed SQLite pages back where configured; report the space."""
    if db.dialect != "sqlite":
        return {"space_note": "PostgreSQL reuses the space (autovacuum); VACUUM FULL hands it back"}
    after = _space(db)
    freed = max(0, after["freelist_count"] - before["freelist_count"]) * after["page_size"]
    out: dict[str, Any] = {"bytes_freed": freed, "file_bytes_before": before["page_count"] * before["page_size"]}
    if after["auto_vacuum"] == 2:  # INCREMENTAL: release free pages in small steps
        while True:
            remaining = _space(db)["freelist_count"]
            if not remaining:
                break
            db.write(lambda s: s.execute(sa.text("PRAGMA incremental_vacuum(2000)")).all())
            if _space(db)["freelist_count"] >= remaining:
                break
    elif vacuum:
        with db.engine.connect() as conn:
            conn.connection.driver_connection.execute("VACUUM")
    final = _space(db)
    out["file_bytes_after"] = final["page_count"] * final["page_size"]
    out["bytes_returned_to_os"] = max(0, out["file_bytes_before"] - out["file_bytes_after"])
    return out
