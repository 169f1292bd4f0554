"""Job history: the claim of each firing, outcomes, run-now requests, metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from console.jobs import history
from console.jobs.scheduler import run_job

T0 = datetime(2026, 3, 1, 3, 30, tzinfo=UTC)


def test_a_firing_is_claimed_once(db):
    first = db.write(lambda s: history.claim_firing(s, "backup", T0, "schedule"))
    second = db.write(lambda s: history.claim_firing(s, "backup", T0, "schedule"))
    other_period = db.write(lambda s: history.claim_firing(s, "backup", T0 + timedelta(seconds=2), "schedule"))
    other_job = db.write(lambda s: history.claim_firing(s, "export", T0, "schedule"))
    assert first and other_period and other_job
    assert second is None


def test_run_job_records_success_and_counts(db, settings):
    result = run_job(db, settings, "retention", T0, "schedule", work=lambda: {"runs_deleted": 3})
    assert result["outcome"] == "success"
    assert run_job(db, settings, "retention", T0, "schedule", work=lambda: {"runs_deleted": 9}) is None
    with db.read() as session:
        (run,) = history.recent_runs(session, "retention")
    assert run["outcome"] == "success" and run["trigger"] == "schedule"
    assert run["counts"] == {"runs_deleted": 3}
    assert run["scheduled_for"] == T0 and run["ended_at"] >= run["started_at"]


def test_a_failing_job_is_a_failed_run_with_its_error(db, settings):
    def boom():
        raise OSError("disk full")

    result = run_job(db, settings, "backup", T0, "schedule", work=boom)
    assert result["outcome"] == "failure" and "disk full" in result["error"]
    with db.read() as session:
        (run,) = history.recent_runs(session, "backup")
        metrics = history.job_metrics(session)
    assert run["outcome"] == "failure" and "OSError: disk full" in run["error"]
    assert metrics["backup"] == {"last_success": None, "failures": 1}


def test_job_metrics_give_last_success_and_failures(db, settings):
    run_job(db, settings, "export", T0, "schedule", work=lambda: {})
    run_job(db, settings, "export", T0 + timedelta(minutes=1), "schedule", work=lambda: {})
    run_job(db, settings, "export", T0 + timedelta(minutes=2), "schedule", work=lambda: 1 / 0)
    with db.read() as session:
        metrics = history.job_metrics(session)
        last = max(r["ended_at"] for r in history.recent_runs(session, "export") if r["outcome"] == "success")
    assert metrics["export"]["failures"] == 1
    assert metrics["export"]["last_success"] == last


def test_a_run_now_request_is_taken_once(db):
    db.write(lambda s: history.request_run(s, "backup", "operator:alice", now=T0))
    taken = db.write(history.take_run_requests)
    again = db.write(history.take_run_requests)
    assert taken == [("backup", T0)] and again == []


def test_list_jobs_shows_next_run_and_last_outcome(db, settings):
    db.write(lambda s: history.write_next_runs(s, {"backup": T0, "export": None}, "host:1"))
    run_job(db, settings, "backup", T0 - timedelta(days=1), "schedule", work=lambda: {"bytes": 10})
    with db.read() as session:
        jobs = {j["job"]: j for j in history.list_jobs(session, ["backup", "export"])}
    assert jobs["backup"]["next_run_at"] == T0 and jobs["backup"]["leader"] == "host:1"
    assert jobs["backup"]["last_run"]["outcome"] == "success"
    assert jobs["export"]["last_run"] is None


def test_abandoned_runs_of_a_former_leader_are_marked_failed(db):
    db.write(lambda s: history.claim_firing(s, "backup", T0, "schedule"))
    assert db.write(lambda s: history.abandon_running(s, "another-host:1")) == 1
    with db.read() as session:
        (run,) = history.recent_runs(session, "backup")
    assert run["outcome"] == "failure" and "abandoned" in run["error"]


def test_history_is_pruned_after_the_kept_days(db, settings):
    now = datetime.now(UTC)
    old = db.write(lambda s: history.claim_firing(s, "backup", T0, "schedule", now=now - timedelta(days=40)))
    db.write(lambda s: history.finish_firing(s, old, "success", {}))
    run_job(db, settings, "backup", now, "schedule", work=lambda: {})
    with db.read() as session:
        runs = history.recent_runs(session, "backup")
    assert [r["scheduled_for"] for r in runs] == [now]
