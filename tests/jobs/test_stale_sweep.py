"""The stale sweep marks silent runs failed through the stale page's domain function."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from console.core.timeutil import format_utc, utcnow
from console.jobs.scheduler import configured_jobs, run_job
from console.jobs.stale import sweep_stale_runs
from console.store.models import agent_runs
from tests.jobs.conftest import insert_runs, run_row


def runs_by_id(db):
    with db.read() as session:
        return {r["run_id"]: dict(r) for r in session.execute(sa.select(agent_runs)).mappings()}


def test_silent_runs_are_marked_failed_by_the_sweep_and_late_news_reopens_them(db, client):
    now = utcnow()
    insert_runs(db, [
        run_row(run_id="silent", status="running", created_at=now - timedelta(hours=2)),
        run_row(run_id="alive", status="running", created_at=now - timedelta(minutes=5)),
        run_row(run_id="done", status="success", created_at=now - timedelta(hours=3)),
    ])
    report = sweep_stale_runs(db, 60)
    runs = runs_by_id(db)
    assert report["marked_failed"] == 1
    assert runs["silent"]["status"] == "failure" and runs["silent"]["stale_marked_by"] == "sweep"
    assert "sweep" in runs["silent"]["error_summary"] and "60 minutes" in runs["silent"]["error_summary"]
    assert runs["alive"]["status"] == "running" and runs["done"]["status"] == "success"

    # A heartbeat timestamped after the sweep's verdict reopens the run.
    later = format_utc(utcnow() + timedelta(seconds=1))
    response = client.post(f"/api/v1/runs/{runs['silent']['event_id']}/heartbeat", json={"timestamp": later})
    assert response.status_code == 200
    assert runs_by_id(db)["silent"]["status"] == "running"


def test_the_sweep_is_off_by_default_and_a_recorded_job_when_on(db, make_settings):
    assert "stale_sweep" not in configured_jobs(make_settings())
    settings = make_settings(TELEMETRY_STALE_SWEEP_MINUTES=30)
    assert configured_jobs(settings)["stale_sweep"] == "60"
    insert_runs(db, [run_row(status="running", created_at=utcnow() - timedelta(hours=1))])
    result = run_job(db, settings, "stale_sweep", trigger="schedule")
    assert result["outcome"] == "success" and result["counts"]["marked_failed"] == 1
