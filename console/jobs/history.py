"""Job history and state: the claim of each firing, outcomes, next runs, "run now".

Plain functions over a Session (no Flask, no scheduler), shared by the scheduler,
the CLI, the Jobs page and /metrics.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from console.core.timeutil import utcnow
from console.jobs.tables import job_runs, job_state


def runner_name() -> str:
    """host:pid of this process (recomputed: a forked worker has its own pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_firing(session: Session, job: str, scheduled_for: datetime, trigger: str,
                 now: datetime | None = None) -> int | None:
    """Insert the (job, scheduled_for) row; return its id, or None if another process has it."""
    now = now or utcnow()
    try:
        with session.begin_nested():
            result = session.execute(
                job_runs.insert().values(
                    job=job, scheduled_for=scheduled_for, trigger=trigger, runner=runner_name(),
                    started_at=now, outcome="running",
                )
            )
    except IntegrityError:
        return None
    return result.inserted_primary_key[0]


def finish_firing(session: Session, run_id: int, outcome: str, counts: dict[str, Any] | None = None,
                  error: str | None = None, now: datetime | None = None) -> None:
    """Record how a claimed run ended."""
    session.execute(
        job_runs.update().where(job_runs.c.id == run_id).values(
            ended_at=now or utcnow(), outcome=outcome,
            counts=json.dumps(counts, default=str) if counts is not None else None,
            error=error[:4000] if error else None,
        )
    )


def abandon_running(session: Session, except_runner: str, now: datetime | None = None) -> int:
    """Mark runs left `running` by a former leader as failed; return how many."""
    result = session.execute(
        job_runs.update()
        .where(job_runs.c.outcome == "running", job_runs.c.runner != except_runner)
        .values(outcome="failure", ended_at=now or utcnow(), error="abandoned: its leader stopped before it finished")
    )
    return result.rowcount


def prune_history(session: Session, keep_days: int, now: datetime | None = None) -> int:
    """Delete finished job runs older than `keep_days`.

    The failures among them are added to `job_failures_pruned` first, so that
    /metrics' telemetry_job_failures_total never falls.
    """
    cutoff = (now or utcnow()) - timedelta(days=keep_days)
    old = (job_runs.c.started_at < cutoff, job_runs.c.outcome != "running")
    failures = session.execute(
        sa.select(job_runs.c.job, sa.func.count()).where(*old, job_runs.c.outcome == "failure").group_by(job_runs.c.job)
    ).all()
    if failures:
        session.execute(
            sa.text(
                "INSERT INTO job_failures_pruned (job, failures) VALUES (:job, :n) "
                "ON CONFLICT (job) DO UPDATE SET failures = job_failures_pruned.failures + excluded.failures"
            ),
            [{"job": job, "n": n} for job, n in failures],
        )
    result = session.execute(job_runs.delete().where(*old))
    return result.rowcount


def write_next_runs(session: Session, next_runs: dict[str, datetime | None], leader: str,
                    now: datetime | None = None) -> None:
    """Store each job's next run time (the leader does this, so any worker can show it)."""
    now = now or utcnow()
    existing = set(session.execute(sa.select(job_state.c.job)).scalars())
    for job, next_run in next_runs.items():
        values = {"next_run_at": next_run, "leader": leader, "updated_at": now}
        if job in existing:
            session.execute(job_state.update().where(job_state.c.job == job).values(**values))
        else:
            session.execute(job_state.insert().values(job=job, **values))


# The job_state row that holds the leader's lease (not a job): its `leader` and `updated_at`
# say who leads and when it last said so. Any host reads it to tell whether a request
# for a run will be picked up.
LEASE_ROW = "(leader lease)"


def renew_lease(session: Session, leader: str, now: datetime | None = None) -> None:
    """The leader says it is alive (every lease/3 seconds)."""
    now = now or utcnow()
    updated = session.execute(
        job_state.update().where(job_state.c.job == LEASE_ROW).values(leader=leader, updated_at=now)
    ).rowcount
    if not updated:
        session.execute(job_state.insert().values(job=LEASE_ROW, leader=leader, updated_at=now))


def live_leader(session: Session, lease_seconds: float, now: datetime | None = None) -> str | None:
    """The leader (host:pid) that renewed its lease within `lease_seconds`, or None: then no
    scheduler runs anywhere, and nothing picks up a "run now" request."""
    row = session.execute(
        sa.select(job_state.c.leader, job_state.c.updated_at).where(job_state.c.job == LEASE_ROW)
    ).first()
    if row is None or row.updated_at is None:
        return None
    if row.updated_at < (now or utcnow()) - timedelta(seconds=lease_seconds):
        return None
    return row.leader


def unattended(job: str, lease_seconds: float) -> str:
    """What to tell whoever asked for a run of `job` when no scheduler runs anywhere."""
    return (
        f"no scheduler is running (no leader has renewed its lease in the last {lease_seconds:g} s), "
        f"so nothing will pick up the request for {job}: run it by hand with `python -m console jobs run {job}`, "
        "or start a console with TELEMETRY_SCHEDULER_ENABLED=true"
    )


def request_run(session: Session, job: str, requested_by: str = "operator", now: datetime | None = None) -> None:
    """Ask the leader to run `job` now (it looks every second or so)."""
    now = now or utcnow()
    updated = session.execute(
        job_state.update().where(job_state.c.job == job).values(run_requested_at=now, run_requested_by=requested_by)
    ).rowcount
    if not updated:
        session.execute(job_state.insert().values(job=job, run_requested_at=now, run_requested_by=requested_by))


def has_run_requests(session: Session) -> bool:
    return session.execute(
        sa.select(job_state.c.job).where(job_state.c.run_requested_at.is_not(None)).limit(1)).first() is not None


def take_run_requests(session: Session) -> list[tuple[str, datetime]]:
    """Claim the pending "run now" requests, each by a conditional UPDATE; return (job, requested_at)."""
    pending = session.execute(
        sa.select(job_state.c.job, job_state.c.run_requested_at).where(job_state.c.run_requested_at.is_not(None))
    ).all()
    taken = []
    for job, requested_at in pending:
        result = session.execute(
            job_state.update()
            .where(job_state.c.job == job, job_state.c.run_requested_at == requested_at)
            .values(run_requested_at=None, run_requested_by=None)
        )
        if result.rowcount == 1:
            taken.append((job, requested_at))
    return taken


def recent_runs(session: Session, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The latest runs, newest first."""
    query = sa.select(job_runs).order_by(job_runs.c.started_at.desc(), job_runs.c.id.desc()).limit(limit)
    if job:
        query = query.where(job_runs.c.job == job)
    return [_run_dict(row) for row in session.execute(query).mappings()]


def list_jobs(session: Session, jobs: list[str]) -> list[dict[str, Any]]:
    """Each job with its next run, last run and last outcome, for the Jobs page and `jobs list`."""
    state = {row.job: row for row in session.execute(sa.select(job_state).where(job_state.c.job != LEASE_ROW))}
    out = []
    for job in sorted(set(jobs) | set(state)):
        last = session.execute(
            sa.select(job_runs).where(job_runs.c.job == job)
            .order_by(job_runs.c.started_at.desc(), job_runs.c.id.desc()).limit(1)
        ).mappings().first()
        row = state.get(job)
        out.append({
            "job": job,
            "enabled": job in jobs,
            "next_run_at": row.next_run_at if row else None,
            "leader": row.leader if row else None,
            "run_requested_at": row.run_requested_at if row else None,
            "last_run": _run_dict(last) if last else None,
        })
    return out


def job_metrics(session: Session) -> dict[str, dict[str, Any]]:
    """{job: {"last_success": datetime | None, "failures": int}} for /metrics (failures include pruned ones)."""
    out: dict[str, dict[str, Any]] = {}
    rows = session.execute(
        sa.select(job_runs.c.job, job_runs.c.outcome, sa.func.max(job_runs.c.ended_at), sa.func.count())
        .where(job_runs.c.outcome != "running")
        .group_by(job_runs.c.job, job_runs.c.outcome)
    ).all()
    for job, outcome, last_end, count in rows:
        entry = out.setdefault(job, {"last_success": None, "failures": 0})
        if outcome == "success":
            entry["last_success"] = last_end
        elif outcome == "failure":
            entry["failures"] += count
    for job, pruned in session.execute(sa.text("SELECT job, failures FROM job_failures_pruned")):
        out.setdefault(job, {"last_success": None, "failures": 0})["failures"] += pruned
    return out


def _run_dict(row) -> dict[str, Any]:
    out = dict(row)
    if out.get("counts"):
        try:
            out["counts"] = json.loads(out["counts"])
        except ValueError:
            pass
    return out
