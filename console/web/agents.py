"""Agents overview (from the rollups, via console.domain.stats)."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app

from console.core.timeutil import utcnow
from console.domain import runs, stats
from console.domain.records import run_to_dict
from console.domain.validation import STATUSES
from console.store import reconcile
from console.web import web_bp
from console.web.alerts import open_incidents_by_agent
from console.web.charts import daily_chart
from console.web.render import page

CHART_DAYS = 30


def _db():
    return current_app.extensions["telemetry_db"]


@web_bp.get("/agents", endpoint="agents")
def agents_page():
    """Per agent: last run, runs and success rate over 24 h and 7 d, p50/p95, 30 days of runs."""
    now = utcnow()
    hosts = current_app.config["SETTINGS"].git_hosts
    reconcile.ensure_fresh(_db())  # the figures come from the rollups: catch them up first
    with _db().read() as session:
        latest = runs.latest_run_per_agent(session)
        day = stats.run_stats(session, since=now - timedelta(hours=24), now=now, buckets=False, durations=False)
        week = stats.run_stats(session, since=now - timedelta(days=7), now=now, buckets=False)
        first_day = now - timedelta(days=CHART_DAYS - 1)
        month = stats.daily_counts_by_agent(session, first_day)
        incidents = open_incidents_by_agent(session)
        agents = []
        for name in sorted(latest):
            agents.append({
                "name": name,
                "last_run": run_to_dict(latest[name], hosts),
                "day": day["agents"].get(name),
                "week": week["agents"].get(name),
                "incidents": incidents.get(name, []),
                "chart": daily_chart(month.get(name, {}), days=CHART_DAYS, today=now),
            })
    return page("agents.html", agents=agents, statuses=STATUSES, chart_days=CHART_DAYS)
