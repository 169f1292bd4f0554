"""Agents overview, and the Jobs placeholder the scheduler fills in."""

from __future__ import annotations

from flask import current_app

from .. import runs
from . import web_bp
from .render import page


def _db():
    return current_app.extensions["telemetry_db"]


@web_bp.get("/agents", endpoint="agents")
def agents_page():
    with _db().read() as session:
        names = runs.distinct_values(session, "agent_name")
    return page("agents.html", agents=[{"agent_name": n} for n in names])


@web_bp.get("/jobs", endpoint="jobs")
def jobs_page():
    return page("jobs.html")
