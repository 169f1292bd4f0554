"""With no scheduler running anywhere, "run now" says that nothing will pick it up, and how to run the job.

"No scheduler" is read from the database (no leader renewed its lease within the
lease time), so it holds across hosts. The real Jobs page, the run page's "retry
export", and the real CLI in a subprocess; a real JobScheduler in this process is
the live leader.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from console.app import create_app
from console.jobs import history, scheduler
from console.jobs.tables import job_runs
from tests.helpers import ROOT

CSRF = "test-csrf-token"
HANG_GUARD = 30.0  # seconds; a leader appears within about one lease (2 s here)


@pytest.fixture
def lease_settings(make_settings):
    return make_settings(TELEMETRY_SCHEDULER_LEASE_SECONDS=2, TELEMETRY_ROLLUP_RECONCILE_SCHEDULE=0)


@pytest.fixture
def page(lease_settings):
    app = create_app(lease_settings, {"TESTING": True})
    client = app.test_client()
    with client.session_transaction() as session:
        session["csrf"] = CSRF
    yield client
    app.extensions["telemetry_db"].dispose()


def wait_until(check, what: str):
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {HANG_GUARD} s: {what}")


def leader_alive(db, settings) -> bool:
    with db.read() as session:
        return history.live_leader(session, settings.scheduler_lease_seconds) is not None


def request_by_cli(env: dict, job: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console", "jobs", "run", job, "--request"], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_without_a_scheduler_the_jobs_page_says_nothing_picks_up_run_now_and_how_to_run_it(page):
    body = page.get("/jobs").get_data(as_text=True)
    assert "No scheduler is running" in body and "python -m console jobs run NAME" in body

    answer = page.post("/jobs/stale_sweep/run", data={"csrf_token": CSRF}, follow_redirects=True)
    text = answer.get_data(as_text=True)
    assert "stale_sweep was requested, but no scheduler is running" in text
    assert "nothing will pick up the request for stale_sweep" in text
    assert "python -m console jobs run stale_sweep" in text

    partial = page.post("/jobs/backup/run", data={"csrf_token": CSRF}, headers={"HX-Request": "true"})
    text = partial.get_data(as_text=True)
    assert "will run within a few seconds" not in text
    assert "requested, but nothing will pick it up: run <code>python -m console jobs run backup</code>" in text


def test_without_a_scheduler_retry_export_says_nothing_will_send_it(page, db):
    from tests.jobs.conftest import insert_runs, run_row

    row = run_row()
    insert_runs(db, [row])
    db.write(lambda s: s.execute(sa.text(
        "INSERT INTO export_state (event_id, destination, state, attempts, tries) "
        "VALUES (:e, 'webhook', 'rejected', 1, 1)"), {"e": row["event_id"]}))
    answer = page.post(f"/runs/{row['event_id']}/export/retry", data={"csrf_token": CSRF}, follow_redirects=True)
    text = answer.get_data(as_text=True)
    assert "Export queued again, but no scheduler is running" in text
    assert "python -m console jobs run export" in text


def test_without_a_scheduler_the_cli_request_says_so_and_exits_1(env, lease_settings):
    done = request_by_cli({**env, "TELEMETRY_SCHEDULER_LEASE_SECONDS": "2"}, "retention")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "no scheduler is running" in done.stderr
    assert "python -m console jobs run retention" in done.stderr


def test_with_a_live_leader_run_now_is_picked_up_and_when_it_stops_the_page_says_so(
        page, db, env, lease_settings):
    leader = scheduler.JobScheduler(lease_settings, poll_seconds=0.2).start()
    try:
        wait_until(lambda: leader_alive(db, lease_settings), "a leader renews its lease")
        assert "No scheduler is running" not in page.get("/jobs").get_data(as_text=True)

        answer = page.post("/jobs/stale_sweep/run", data={"csrf_token": CSRF}, follow_redirects=True)
        assert "stale_sweep will run within a few seconds" in answer.get_data(as_text=True)
        done = request_by_cli({**env, "TELEMETRY_SCHEDULER_LEASE_SECONDS": "2"}, "retention")
        assert done.returncode == 0 and "requested: the leader" in done.stdout, done.stderr

        def manual_runs():
            with db.read() as session:
                return set(session.execute(
                    sa.select(job_runs.c.job).where(job_runs.c.trigger == "manual")).scalars())

        wait_until(lambda: manual_runs() == {"stale_sweep", "retention"}, "the leader runs both requests")
    finally:
        leader.stop()
    wait_until(lambda: not leader_alive(db, lease_settings), "the stopped leader's lease runs out")
    assert "No scheduler is running" in page.get("/jobs").get_data(as_text=True)
