"""Agents overview (from the rollups, via console.domain.stats), a page of agents at a time."""

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
from console.web.paging import page_number, pager, past_the_end
from console.web.render import page

CHART_DAYS = 30
# Each card draws a 30-day chart and reads 7 days of duration histograms: 24 cards (a
# full grid of 2, 3 or 4 columns) keep a page of the busiest agents near 350 kB of
# HTML and its reads to the agents shown, however many agents report.
AGENTS_PER_PAGE = 24


def _db():
    return current_app.extensions["telemetry_db"]


@web_bp.get("/agents", endpoint="agents")
def agents_page():
    """Per agent: last run, runs and success rate over 24 h and 7 d, p50/p95, 30 days of runs."""
    number, error = page_number()
    status = 400 if error else 200
    now = utcnow()
    hosts = current_app.config["SETTINGS"].git_hosts
    reconcile.ensure_fresh(_db())  # the figures come from the rollups: catch them up first
    with _db().read() as session:
        names = runs.agent_names(session)
        if error is None and (error := past_the_end(number, len(names), AGENTS_PER_PAGE, "agents")):
            status = 404
        if error:
            number = 1
        shown = names[(number - 1) * AGENTS_PER_PAGE:number * AGENTS_PER_PAGE]
        latest = runs.latest_run_per_agent(session, shown)
        day = stats.run_stats(session, agents=shown, since=now - timedelta(hours=24), now=now, buckets=False,
                              durations=False)
        week = stats.run_stats(session, agents=shown, since=now - timedelta(days=7), now=now, buckets=False)
        month = stats.daily_counts_by_agent(session, now - timedelta(days=CHART_DAYS - 1), shown)
        incidents = open_incidents_by_agent(session)
    agents = [{
        "name": name,
        "last_run": run_to_dict(latest[name], hosts) if name in latest else None,
        "day": day["agents"].get(name),
        "week": week["agents"].get(name),
        "incidents": incidents.get(name, []),
        "chart": daily_chart(month.get(name, {}), days=CHART_DAYS, today=now),
    } for name in shown]
    return page("agents.html", status, agents=agents, statuses=STATUSES, chart_days=CHART_DAYS,
                pager=pager(number, len(names), AGENTS_PER_PAGE, len(shown)), error=error)
