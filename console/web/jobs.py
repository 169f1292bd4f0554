"""The Jobs page: each scheduled job with its next run, last outcome and "run now"."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, url_for

from console.domain import audit
from console.jobs import history
from console.jobs.scheduler import ALL_JOBS, configured_jobs
from console.web import auth as web_auth
from console.web import web_bp
from console.web.render import render, wants_partial


def _db():
    return current_app.extensions["telemetry_db"]


def jobs_context() -> dict:
    """What the page and its partial show (the leader writes next runs; any worker reads them)."""
    settings = current_app.config["SETTINGS"]
    schedules = configured_jobs(settings)
    with _db().read() as session:
        jobs = history.list_jobs(session, list(schedules))
        recent = history.recent_runs(session, limit=25)
        leader = history.live_leader(session, settings.scheduler_lease_seconds)
    for job in jobs:
        job["schedule"] = schedules.get(job["job"])
    return {"jobs": jobs, "recent": recent, "leader": leader, "lease_seconds": settings.scheduler_lease_seconds}


@web_bp.get("/jobs", endpoint="jobs")
def jobs_page():
    """Every job: schedule, next run, last run and outcome; the recent history."""
    return render("jobs.html", "_jobs.html", **jobs_context())


@web_bp.post("/jobs/<name>/run", endpoint="jobs_run_now")
def jobs_run_now(name: str):
    """Record a "run now" request; the leader picks it up within a second or two (the answer
    says so when no scheduler runs anywhere)."""
    if name not in ALL_JOBS:
        abort(404)
    actor = f"operator:{web_auth.current_user() or 'console'}"

    def request(session):
        history.request_run(session, name, actor)
        audit.record(session, actor, "run_job", detail=name)

    _db().write(request)
    context = jobs_context()
    if wants_partial():
        return render("jobs.html", "_jobs.html", requested=name, **context)
    if context["leader"]:
        flash(f"{name} will run within a few seconds.", "ok")
    else:
        flash(f"{name} was requested, but {history.unattended(name, context['lease_seconds'])}.", "error")
    return redirect(url_for("web.jobs"), 303)
