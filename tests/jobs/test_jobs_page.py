"""The Jobs page: next run, last outcome, history, and a "run now" the leader picks up."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from console.jobs import history
from console.jobs.scheduler import run_job
from console.jobs.tables import job_state

CSRF = "test-csrf-token"


def test_jobs_page_lists_next_run_last_outcome_and_history(client, db, settings):
    db.write(lambda s: history.write_next_runs(s, {"backup": datetime(2031, 5, 6, 2, 0, tzinfo=UTC)}, "h:1"))
    run_job(db, settings, "backup", trigger="schedule", work=lambda: {"bytes": 12345})
    run_job(db, settings, "export", trigger="manual", work=lambda: 1 / 0)
    body = client.get("/jobs").get_data(as_text=True)
    assert "2031-05-06" in body
    assert "bytes: 12345" in body and "ZeroDivisionError" in body
    assert body.count("Run now") >= 2
    partial = client.get("/jobs", headers={"HX-Request": "true"})
    assert partial.status_code == 200 and "<html" not in partial.get_data(as_text=True)
    assert 'id="jobs"' in partial.get_data(as_text=True)


def test_run_now_records_a_request_for_the_leader(client, db):
    with client.session_transaction() as session:
        session["csrf"] = CSRF
    response = client.post("/jobs/backup/run", data={"csrf_token": CSRF})
    assert response.status_code == 303
    with db.read() as session:
        state = session.execute(sa.select(job_state).where(job_state.c.job == "backup")).mappings().one()
    assert state["run_requested_at"] is not None and state["run_requested_by"].startswith("operator:")
    assert "requested" in client.get("/jobs").get_data(as_text=True)
    assert client.post("/jobs/nope/run", data={"csrf_token": CSRF}).status_code == 404
    assert client.post("/jobs/backup/run", data={}).status_code == 400  # CSRF
