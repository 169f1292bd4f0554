"""/metrics: usage counts as JSON, or the Prometheus / OpenMetrics exposition.

Everything is computed from the database (rollups, run_counters, ingest_counts,
job_runs, job_failures_pruned), so every worker process answers the same and a
restart loses nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache, partial
from typing import Any, Optional

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from console.alerts import incidents as alert_incidents
from console.core.timeutil import utcnow
from console.domain.recent_runs import recent_runs
from console.domain.stale import silent_since
from console.domain.stats import all_time_histogram, percentile, totals_by_agent
from console.jobs.history import job_metrics
from console.store import counters
from console.store.answer_cache import AnswerCache
from console.store.models import agent_runs

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def usage(session: Session, *, now: Optional[datetime] = None, answers: Optional[AnswerCache] = None) -> dict[str, Any]:
    """The compatible JSON answer: total_runs, agents, recent_24h, performance.

    The counts are kept in `answers` until the next commit; recent_24h moves with the
    clock and is counted on every call.
    """
    counts = answers.answer(session, "usage", stored_usage) if answers else stored_usage(session)
    return {
        "total_runs": counts["total_runs"],
        "agents": counts["agents"],
        "recent_24h": recent_runs(session, now or utcnow()),
        "performance": counts["performance"],
    }


def stored_usage(session: Session) -> dict[str, Any]:
    """The parts of the JSON answer that only a commit changes."""
    totals = totals_by_agent(session)
    agents = {name: sum(by_status.values()) for name, by_status in sorted(totals.items())}
    histogram = all_time_histogram(session)
    finished = sum(n for by_status in totals.values() for s, n in by_status.items() if s != "running")
    success = sum(by_status.get("success", 0) for by_status in totals.values())
    return {
        "total_runs": sum(agents.values()),
        "agents": agents,
        "performance": {
            "success_rate": round(success / finished, 4) if finished else None,
            "p50_ms": percentile(histogram, 0.5),
            "p95_ms": percentile(histogram, 0.95),
            "running": sum(by_status.get("running", 0) for by_status in totals.values()),
        },
    }


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@lru_cache(maxsize=16384)
def _series(name: str, pairs: tuple[tuple[str, Any], ...]) -> str:
    """`name{k="v",...} `, escaped: the same series recur in every scrape, so each is written once."""
    if not pairs:
        return f"{name} "
    return name + "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "} "


class _Family:
    def __init__(self, name: str, kind: str, help_text: str):
        self.name, self.kind, self.help = name, kind, help_text
        self.samples: list[tuple[dict[str, Any], float]] = []

    def add(self, labels: dict[str, Any], value: float) -> None:
        self.samples.append((labels, value))

    def render(self, openmetrics: bool) -> list[str]:
        # OpenMetrics names a counter family without its `_total` suffix.
        family = self.name.removesuffix("_total") if openmetrics and self.kind == "counter" else self.name
        lines = [f"# HELP {family} {self.help}", f"# TYPE {family} {self.kind}"]
        for labels, value in self.samples:
            number = repr(float(value)) if isinstance(value, float) and not value.is_integer() else str(int(value))
            lines.append(_series(self.name, tuple(labels.items())) + number)
        return lines


def stale_by_agent(session: Session, threshold_minutes: int, now: datetime) -> dict[str, int]:
    cutoff = now - timedelta(minutes=threshold_minutes)
    c = agent_runs.c
    query = select(c.agent_name, func.count()).where(silent_since(cutoff)).group_by(c.agent_name)
    return {agent: n for agent, n in session.execute(query)}


def alert_families(session: Session) -> list[_Family]:
    """Open incidents, delivery attempts (a counter kept in the database), the last rule evaluation."""
    opened = _Family("telemetry_alert_incidents_open", "gauge", "Open alert incidents, by agent and kind.")
    sent = _Family("telemetry_alert_notifications_total", "counter",
                   "Alert delivery attempts, by channel kind and outcome (sent, failed, rejected).")
    evaluated = _Family("telemetry_alert_last_evaluation_timestamp_seconds", "gauge",
                        "When the leader last evaluated the alert rules (Unix time).")
    for agent, kind, count in sorted(alert_incidents.open_counts(session)):
        opened.add({"agent": agent, "kind": kind}, count)
    for channel_kind, outcome, count in sorted(alert_incidents.counters(session)):
        sent.add({"channel_kind": channel_kind, "outcome": outcome}, count)
    state = alert_incidents.last_evaluation(session)
    if state and state["last_evaluated_at"] is not None:
        evaluated.add({}, state["last_evaluated_at"].timestamp())
    return [opened, sent, evaluated]


def exposition(
    session: Session,
    *,
    stale_threshold_minutes: int,
    openmetrics: bool = False,
    now: Optional[datetime] = None,
    answers: Optional[AnswerCache] = None,
) -> str:
    """The metrics in Prometheus text format 0.0.4, or OpenMetrics 1.0.

    Gauges say what is stored now; every `_total` counter lives in the database and
    never falls, across restarts, deletes, retention and job-history pruning. All
    but the stale runs (which move with the clock) are kept in `answers` until the
    next commit.
    """
    now = now or utcnow()
    compute = partial(_stored_families, openmetrics=openmetrics)
    head, tail = answers.answer(session, ("exposition", openmetrics), compute) if answers else compute(session)
    stale = _Family(
        "telemetry_runs_stale",
        "gauge",
        f"Running runs silent longer than the stale threshold ({stale_threshold_minutes} min).",
    )
    for agent, n in sorted(stale_by_agent(session, stale_threshold_minutes, now).items()):
        stale.add({"agent": agent}, n)
    lines = [head, *stale.render(openmetrics), tail]
    if openmetrics:
        lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _stored_families(session: Session, *, openmetrics: bool) -> tuple[str, str]:
    """The families that only a commit changes, rendered: those before the stale runs, and those after."""
    runs = _Family("telemetry_runs", "gauge", "Runs stored now, by agent and current status.")
    running = _Family("telemetry_runs_running", "gauge", "Runs whose status is running.")
    started = _Family("telemetry_runs_started_total", "counter", "Runs received, by agent (each run once).")
    finished = _Family(
        "telemetry_runs_finished_total",
        "counter",
        "Runs that reached a final status, by agent and that status (each run once, at its first final status).",
    )
    ingest = _Family("telemetry_ingest_records_total", "counter", "Spool lines received by /api/v1/ingest, by outcome.")
    job_success = _Family(
        "telemetry_job_last_success_timestamp_seconds",
        "gauge",
        "When each scheduled job last ended successfully (Unix time).",
    )
    job_failures = _Family("telemetry_job_failures_total", "counter", "Failed runs of each scheduled job.")

    totals = totals_by_agent(session)
    for agent, by_status in sorted(totals.items()):
        for status, n in sorted(by_status.items()):
            runs.add({"agent": agent, "status": status}, n)
        running.add({"agent": agent}, by_status.get("running", 0))
    started_by_agent, finished_by_status = counters.read(session)
    for agent, n in sorted(started_by_agent.items()):
        started.add({"agent": agent}, n)
    for (agent, status), n in sorted(finished_by_status.items()):
        finished.add({"agent": agent, "status": status}, n)
    for outcome, n in session.execute(text("SELECT outcome, records FROM ingest_counts ORDER BY outcome")):
        ingest.add({"outcome": outcome}, n)
    for job, figures in sorted(job_metrics(session).items()):
        if figures["last_success"] is not None:
            job_success.add({"job": job}, figures["last_success"].timestamp())
        job_failures.add({"job": job}, figures["failures"])

    def rendered(families) -> str:
        return "\n".join(line for family in families for line in family.render(openmetrics))

    return rendered((runs, running)), rendered((started, finished, ingest, job_success, job_failures,
                                                 *alert_families(session)))
