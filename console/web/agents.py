"""Agents overview (from the rollups, via console.stats)."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app

from .. import runs, stats, web_queries
from ..records import run_to_dict
from ..timeutil import utcnow
from ..validation import STATUSES
from . import web_bp
from .charts import daily_chart
from .render import page

CHART_DAYS = 30


def _db():
    return current_app.extensions["telemetry_db"]


def summary(counts: dict[str, int]) -> dict:
    """Total and success rate (success / finished runs, as the stats API computes it)."""
    total = sum(counts.values())
    finished = total - counts.get("running", 0)
    return {"total": total, "success_rate": counts.get("success", 0) / finished if finished else None}


@web_bp.get("/agents", endpoint="agents")
def agents_page():
    """Per agent: last run, runs and success rate over 24 h and 7 d, p50/p95, 30 days of runs."""
    now = utcnow()
    hosts = current_app.config["SETTINGS"].git_hosts
    with _db().read() as session:
        names = runs.distinct_values(session, "agent_name")
        # Counts alone come straight from the hourly rollups; only the 7-day block
        # needs the duration histograms (p50 / p95), so only it goes through stats —
        # one agent at a time, which rides the (agent_name, hour) index (measured at
        # 1M runs / 20 agents: 20 calls ≈ 90 ms, one call for all agents ≈ 300-500 ms).
        hour = now.replace(minute=0, second=0, microsecond=0)
        day = web_queries.status_counts_by_agent(session, hour - timedelta(hours=24))
        week = {}
        for name in names:
            week.update(stats.run_stats(session, agent_name=name, since=now - timedelta(days=7), now=now)["agents"])
        first_day = hour.replace(hour=0) - timedelta(days=CHART_DAYS - 1)
        month = web_queries.daily_counts_by_agent(session, first_day)
        agents = []
        for name in names:
            last, _cursor = runs.list_runs(session, runs.RunFilters(agent_name=name), limit=1)
            agents.append({
                "name": name,
                "last_run": run_to_dict(last[0], hosts) if last else None,
                "day": summary(day.get(name, {})),
                "week": week.get(name),
                "chart": daily_chart(month.get(name, []), days=CHART_DAYS, today=now),
            })
    return page("agents.html", agents=agents, statuses=STATUSES, chart_days=CHART_DAYS)
