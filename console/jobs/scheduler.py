"""One scheduler, however many workers: APScheduler runs jobs only in the leader.

Every worker started by `serve` builds a paused BackgroundScheduler and an elector
thread. The elector tries the leader lock every lease/3 seconds; the one that holds
it resumes its scheduler, writes each job's next run time to `job_state` and picks
up "run now" requests about once a second. It renews its lease in `job_state` every
lease/3 seconds, so that any host can tell when no scheduler runs anywhere
(history.live_leader) and say so to whoever asks for a run. Each firing is claimed by inserting
(job, scheduled_for) under a unique key before it runs (history.claim_firing), so a
leader change never runs a period twice. Interval schedules are aligned to a fixed
epoch, so every process computes the same `scheduled_for` for a period.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from console.core.settings import Settings, load_settings
from console.core.timeutil import utcnow
from console.jobs import history
from console.jobs.leader import LeaderLock
from console.store.db import Database, make_engine

log = logging.getLogger("console.jobs.scheduler")

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
ALL_JOBS = ("backup", "export", "retention", "stale_sweep", "rollup_reconcile")
JobFunction = Callable[[Database, Settings], dict[str, Any]]


def job_functions() -> dict[str, JobFunction]:
    from console.jobs import backup, export, retention, stale
    from console.store import reconcile

    return {
        "backup": backup.scheduled_backup,
        "export": export.scheduled_export,
        "retention": retention.scheduled_retention,
        "stale_sweep": stale.scheduled_sweep,
        "rollup_reconcile": reconcile.scheduled_reconcile,
    }


def configured_jobs(settings: Settings) -> dict[str, str]:
    """The jobs that are switched on, with their schedules (seconds or cron)."""
    from console.jobs.export import destinations

    # Reconciling rollups after other tools' direct writes matters on SQLite only.
    jobs = {"backup": settings.backup_schedule}
    if settings.is_sqlite:
        jobs["rollup_reconcile"] = settings.rollup_reconcile_schedule
    if settings.retention_days > 0:
        jobs["retention"] = settings.retention_schedule
    if destinations(settings):
        jobs["export"] = settings.export_schedule
    if settings.stale_sweep_minutes > 0:
        jobs["stale_sweep"] = settings.stale_sweep_schedule
    return {name: schedule for name, schedule in jobs.items() if schedule != "0"}


def make_trigger(schedule: str):
    if schedule.isdigit():
        return IntervalTrigger(seconds=int(schedule), start_date=EPOCH, timezone=UTC)
    return CronTrigger.from_crontab(schedule, timezone="UTC")


_job_locks: dict[str, threading.Lock] = {}
_job_locks_guard = threading.Lock()


def run_job(db: Database, settings: Settings, name: str, scheduled_for: datetime | None = None,
            trigger: str = "manual", work: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """Claim and run one firing of `name`; None when another process claimed it.

    The outcome is recorded in job_runs whatever happens; a failure is logged loudly
    and recorded with its error, never raised into the scheduler. `work` replaces
    the job's function (the CLI passes its options that way).
    """
    func = work or functools.partial(job_functions()[name], db, settings)
    scheduled_for = scheduled_for or utcnow()
    with _job_locks_guard:
        lock = _job_locks.setdefault(name, threading.Lock())
    with lock:  # never the same job twice at once in one process
        run_id = db.write(lambda s: history.claim_firing(s, name, scheduled_for, trigger))
        if run_id is None:
            log.info("job %s for %s was claimed by another process", name, scheduled_for.isoformat())
            return None
        log.info("job %s started (%s, scheduled for %s)", name, trigger, scheduled_for.isoformat())
        try:
            counts = func()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("job %s FAILED: %s\n%s", name, error, traceback.format_exc())
            db.write(lambda s: history.finish_firing(s, run_id, "failure", None, error))
            return {"run_id": run_id, "outcome": "failure", "error": error}
        db.write(lambda s: history.finish_firing(s, run_id, "success", counts))
        log.info("job %s succeeded: %s", name, counts)
        try:
            db.write(lambda s: history.prune_history(s, settings.job_history_days))
        except Exception:
            log.exception("pruning job history failed")
        return {"run_id": run_id, "outcome": "success", "counts": counts}


class _Firing:
    """A Job as APScheduler's run_job() sees it, with the firing's time passed on."""

    def __init__(self, job, run_time: datetime):
        self._job = job
        self.func = job.func if "scheduled_for" in job.kwargs else functools.partial(job.func, scheduled_for=run_time)

    def __getattr__(self, name: str):
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)


class ClaimingExecutor(ThreadPoolExecutor):
    """A thread pool that tells the job which scheduled time it is running."""

    def _do_submit_job(self, job, run_times):
        super()._do_submit_job(_Firing(job, run_times[-1]), run_times)


class JobScheduler:
    """The per-process scheduler: paused unless this process holds the leader lock."""

    def __init__(self, settings: Settings, db: Database | None = None, poll_seconds: float = 1.0):
        self.settings = settings
        self.db = db or Database(settings, engine=make_engine(settings, pool_size=2))
        self.jobs = configured_jobs(settings)
        self.lock = LeaderLock(settings)
        self.poll_seconds = poll_seconds
        self.is_leader = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written: dict[str, datetime | None] | None = None
        self._renewed_at = 0.0  # time.monotonic() of the last renewal of the lease
        self.alerts: Any = None  # the alert loop, while this process leads
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ClaimingExecutor(max_workers=4)},
            # A missed period runs once when a leader is back (coalesced); the claim
            # makes that a no-op when the former leader had already run it.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        for name, schedule in self.jobs.items():
            self.scheduler.add_job(self._fire, make_trigger(schedule), id=name, name=name,
                                   kwargs={"name": name}, replace_existing=True)

    def start(self) -> JobScheduler:
        self.scheduler.start(paused=True)
        self._thread = threading.Thread(target=self._loop, name="telemetry-leader", daemon=True)
        self._thread.start()
        log.info("scheduler started (jobs: %s; leader lease %ss)", ", ".join(self.jobs) or "none",
                 self.settings.scheduler_lease_seconds)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        try:
            self.scheduler.shutdown(wait=False)
        except Exception:
            pass
        self._stop_alerts()
        self.lock.release()

    def _start_alerts(self) -> None:
        from console.alerts.loop import AlertLoop

        # A pool of its own: deliveries waiting on slow receivers never hold the jobs' connections.
        db = Database(self.settings, engine=make_engine(self.settings, pool_size=2))
        self.alerts = AlertLoop(db, self.settings, history.runner_name()).start()

    def _stop_alerts(self) -> None:
        if self.alerts is not None:
            self.alerts.stop()
            self.alerts.db.dispose()
            self.alerts = None

    def _fire(self, name: str, scheduled_for: datetime | None = None, trigger: str = "schedule") -> None:
        # scheduled_for comes from ClaimingExecutor (the firing's time) or a run-now request.
        if not self.is_leader:  # stepped down while the firing was queued
            return
        run_job(self.db, self.settings, name, scheduled_for, trigger)

    def _loop(self) -> None:
        follower_wait = max(0.5, self.settings.scheduler_lease_seconds / 3)
        while not self._stop.is_set():
            try:
                if not self.is_leader:
                    if self.lock.try_acquire():
                        self._become_leader()
                elif not self.lock.still_held():
                    self._step_down()
                else:
                    self._leader_tick()
            except Exception:
                log.exception("scheduler loop error")
            self._stop.wait(self.poll_seconds if self.is_leader else follower_wait)

    def _become_leader(self) -> None:
        me = history.runner_name()
        log.info("this process (%s) is now the scheduler leader", me)
        try:
            abandoned = self.db.write(lambda s: history.abandon_running(s, me))
            if abandoned:
                log.warning("%d job run(s) of a former leader marked abandoned", abandoned)
        except Exception:
            log.exception("could not mark abandoned job runs")
        self.is_leader = True
        self._written = None
        self._renewed_at = 0.0
        self.scheduler.resume()
        self._start_alerts()
        self._leader_tick()

    def _step_down(self) -> None:
        log.warning("this process lost the scheduler leader lock")
        self.is_leader = False
        self._stop_alerts()
        self.scheduler.pause()

    def _leader_tick(self) -> None:
        if time.monotonic() - self._renewed_at >= self.settings.scheduler_lease_seconds / 3:
            self.db.write(lambda s: history.renew_lease(s, history.runner_name()))
            self._renewed_at = time.monotonic()
        next_runs = {job.id: job.next_run_time for job in self.scheduler.get_jobs()}
        if next_runs != self._written:
            self.db.write(lambda s: history.write_next_runs(s, next_runs, history.runner_name()))
            self._written = next_runs
        with self.db.read() as session:  # a read each second; a write only when someone asked
            asked = history.has_run_requests(session)
        for name, requested_at in self.db.write(history.take_run_requests) if asked else []:
            if name not in job_functions():
                log.warning("run-now request for unknown job %r ignored", name)
                continue
            self.scheduler.add_job(self._fire, id=f"{name}:manual:{requested_at.timestamp()}", name=name,
                                   kwargs={"name": name, "scheduled_for": requested_at, "trigger": "manual"})


_current: JobScheduler | None = None


def start_in_worker(settings: Settings | None = None) -> JobScheduler | None:
    """Start this worker's scheduler when TELEMETRY_SCHEDULER_ENABLED is true (gunicorn post_fork)."""
    global _current
    settings = settings or load_settings()
    if not settings.scheduler_enabled or _current is not None:
        return _current
    _current = JobScheduler(settings).start()
    return _current
