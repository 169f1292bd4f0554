"""One scheduler, however many workers: the leader lock, in one process and across real consoles."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from console.jobs import history, scheduler
from console.jobs.leader import LeaderLock
from console.jobs.tables import job_runs, job_state
from console.store.db import Database
from tests.helpers import ConsoleProcess, free_port
from tests.jobs.test_backup import pg_bin_dir


def test_only_one_process_holds_the_leader_lock(settings):
    first, second = LeaderLock(settings), LeaderLock(settings)
    try:
        assert first.try_acquire() and first.still_held()
        assert not second.try_acquire()
        first.release()
        assert second.try_acquire()
        assert not first.try_acquire()
    finally:
        first.release()
        second.release()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_consoles_on_different_databases_do_not_share_the_lock(settings, make_settings, tmp_path):
    other = make_settings(TELEMETRY_DB_PATH=str(tmp_path / "other" / "telemetry.sqlite"))
    assert settings.lock_path("leader") != other.lock_path("leader")
    mine, theirs = LeaderLock(settings), LeaderLock(other)
    try:
        assert mine.try_acquire() and theirs.try_acquire()
    finally:
        mine.release()
        theirs.release()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_postgresql_leader_steps_down_when_its_connection_drops_and_reacquires(settings, db):
    lock = LeaderLock(settings)
    try:
        assert lock.try_acquire()
        pid = lock._conn.info.backend_pid
        with db.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        assert not lock.still_held()
        assert lock.try_acquire() and lock.still_held()
    finally:
        lock.release()


def test_interval_schedules_are_aligned_so_every_process_agrees_on_the_period():
    trigger_a, trigger_b = scheduler.make_trigger("7"), scheduler.make_trigger("7")
    now = scheduler.EPOCH + timedelta(days=9000, seconds=3.5)
    a = trigger_a.get_next_fire_time(None, now)
    b = trigger_b.get_next_fire_time(None, a - timedelta(seconds=0.1))  # another process, later, same period
    assert a == b and (a - scheduler.EPOCH).total_seconds() % 7 == 0


def test_in_one_process_two_schedulers_run_each_period_once_and_run_now_is_picked_up(
        make_settings, db, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(scheduler, "job_functions", lambda: {
        "backup": lambda db, settings: calls.append("backup") or {"ok": 1}})
    settings = make_settings(TELEMETRY_BACKUP_SCHEDULE=1, TELEMETRY_SCHEDULER_LEASE_SECONDS=2,
                             TELEMETRY_ROLLUP_RECONCILE_SCHEDULE=0)
    first = scheduler.JobScheduler(settings, poll_seconds=0.2).start()
    second = scheduler.JobScheduler(settings, poll_seconds=0.2).start()
    try:
        time.sleep(3.5)
        assert first.is_leader != second.is_leader
        db.write(lambda s: history.request_run(s, "backup", "test"))
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            with db.read() as session:
                manual = session.execute(sa.select(job_runs).where(job_runs.c.trigger == "manual")).all()
            if manual:
                break
            time.sleep(0.1)
        assert len(manual) == 1
        with db.read() as session:
            state = session.execute(sa.select(job_state).where(job_state.c.job == "backup")).mappings().one()
            scheduled = session.execute(sa.select(job_runs.c.scheduled_for).where(
                job_runs.c.trigger == "schedule").order_by(job_runs.c.scheduled_for)).scalars().all()
        assert state["next_run_at"] is not None and state["leader"]
        assert len(scheduled) >= 3
        assert all((b - a).total_seconds() == 1 for a, b in zip(scheduled, scheduled[1:], strict=False))
        assert len(calls) == len(scheduled) + 1
    finally:
        first.stop()
        second.stop()


def _runs(db) -> list[dict]:
    with db.read() as session:
        return [dict(r) for r in session.execute(sa.select(job_runs).order_by(job_runs.c.scheduled_for)).mappings()]


def _wait_for(predicate, timeout: float, step: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


PERIOD = 2
LEASE = 3
JOBS = ("backup", "export", "retention", "stale_sweep")


def test_two_consoles_run_each_job_once_per_period_and_the_survivor_takes_over(env, settings, tmp_path):
    """Two real consoles (two workers each) on one database; SIGKILL the leader's console."""
    closed_port = free_port()
    extra = {
        "TELEMETRY_SCHEDULER_ENABLED": "true", "TELEMETRY_API_WORKERS": "2",
        "TELEMETRY_SCHEDULER_LEASE_SECONDS": str(LEASE),
        "TELEMETRY_BACKUP_SCHEDULE": str(PERIOD), "TELEMETRY_BACKUP_KEEP": "2",
        "TELEMETRY_RETENTION_DAYS": "3650", "TELEMETRY_RETENTION_SCHEDULE": str(PERIOD),
        "TELEMETRY_EXPORT_WEBHOOK_URLS": f"http://127.0.0.1:{closed_port}/hook",
        "TELEMETRY_EXPORT_SCHEDULE": str(PERIOD),
        "TELEMETRY_STALE_SWEEP_MINUTES": "60", "TELEMETRY_STALE_SWEEP_SCHEDULE": str(PERIOD),
        "TELEMETRY_ROLLUP_RECONCILE_SCHEDULE": str(PERIOD),
        "TELEMETRY_PG_BIN_DIR": pg_bin_dir(),
    }
    jobs = JOBS + (("rollup_reconcile",) if settings.is_sqlite else ())
    consoles = [ConsoleProcess({**env, **extra, "TELEMETRY_API_PORT": str(free_port())}, tmp_path / f"c{i}.log")
                for i in range(2)]
    db = Database(settings)
    try:
        for console in consoles:
            console.start()
        time.sleep(4 * PERIOD + 1)
        runs = _runs(db)
        assert runs, consoles[0].log()
        leader = runs[0]["runner"]
        # One leader among four workers: every run so far is its, each period once, all fine.
        assert {r["runner"] for r in runs} == {leader}, runs
        for job in jobs:
            times = [r["scheduled_for"] for r in runs if r["job"] == job]
            assert len(times) >= 3, (job, times)
            assert all((b - a).total_seconds() == PERIOD for a, b in zip(times, times[1:], strict=False)), (job, times)
        finished = [r for r in runs if r["outcome"] != "running"]
        assert {r["outcome"] for r in finished} == {"success"}, [r["error"] for r in finished]

        leader_pid = int(leader.rsplit(":", 1)[1])
        (victim,) = [c for c in consoles if os.getpgid(leader_pid) == c.proc.pid]
        (survivor,) = [c for c in consoles if c is not victim]
        victim.kill()
        killed_at = time.time()
        taken = _wait_for(lambda: [r for r in _runs(db) if r["runner"] != leader], LEASE + 2 * PERIOD + 4)
        assert taken, survivor.log()
        new_leader = taken[0]["runner"]
        assert os.getpgid(int(new_leader.rsplit(":", 1)[1])) == survivor.proc.pid
        takeover = taken[0]["started_at"].timestamp() - killed_at
        time.sleep(3 * PERIOD)
        runs = _runs(db)
        print(f"\n[{settings.database_url.split(':')[0]}] takeover after {takeover:.2f} s; {len(runs)} job runs")
        assert takeover < LEASE + PERIOD + 2
        assert {r["runner"] for r in runs} == {leader, new_leader}
        for job in jobs:
            after = [r["scheduled_for"] for r in runs if r["job"] == job and r["runner"] == new_leader
                     and r["trigger"] == "schedule"]
            assert len(after) >= 2, (job, after)
            assert all((b - a).total_seconds() == PERIOD for a, b in zip(after, after[1:], strict=False)), (job, after)
            before = [r["scheduled_for"] for r in runs if r["job"] == job and r["runner"] == leader]
            assert max(before) < min(after)
        # A run the killed leader left half-done is marked abandoned, never left "running".
        for r in runs:
            if r["runner"] == leader and r["outcome"] != "success":
                assert r["outcome"] == "failure" and "abandoned" in r["error"]
    finally:
        for console in consoles:
            console.stop()
        db.dispose()
