"""Reads the console pages need that the shared domain does not offer (yet).

Plain functions over a Session, no Flask: the pages call these exactly as they call
console.runs. Anything here that the domain modules grow an equivalent for moves
there.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Optional

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from .models import agent_runs
from .runs import RunFilters, filter_conditions
from .timeutil import format_utc
from .validation import STATUSES

c = agent_runs.c

# The deferred count reads at most this many matching rows, then shows "≥ N".
COUNT_CAP = 100_000


def runs_with_run_id(session: Session, run_id: str, limit: int = 20) -> list[Mapping[str, Any]]:
    """Runs whose run_id is `run_id` (a parent link names a run_id), newest first."""
    query = select(agent_runs).where(c.run_id == run_id).order_by(c.created_at.desc(), c.id.desc()).limit(limit)
    return list(session.execute(query).mappings())


def rollup_status_counts(
    session: Session, *, agent_name: Optional[str] = None, status: Optional[str] = None,
    since: Optional[datetime] = None,
) -> dict[str, int]:
    """Runs per status from the hourly rollups (start_time at or after the hour `since`)."""
    where = []
    params: dict[str, Any] = {}
    if agent_name is not None:
        where.append("agent_name = :agent")
        params["agent"] = agent_name
    if status is not None:
        where.append("status = :status")
        params["status"] = status
    if since is not None:
        where.append("hour >= :since")
        params["since"] = format_utc(since) if session.get_bind().dialect.name == "sqlite" else since
    sql = "SELECT status, SUM(runs) FROM run_rollups"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " GROUP BY status"
    counts = {s: 0 for s in STATUSES}
    for row_status, n in session.execute(text(sql), params):
        if row_status in counts:
            counts[row_status] = int(n or 0)
    return counts


def capped_status_counts(
    session: Session, filters: RunFilters, cap: Optional[int] = None
) -> tuple[dict[str, int], bool]:
    """Runs per status for any filter, reading at most `cap` rows; (counts, capped)."""
    cap = cap or COUNT_CAP
    inner = select(c.status).where(*filter_conditions(session, filters)).limit(cap).subquery()
    counts = {s: 0 for s in STATUSES}
    total = 0
    for row_status, n in session.execute(select(inner.c.status, func.count()).group_by(inner.c.status)):
        total += n
        if row_status in counts:
            counts[row_status] = n
    return counts, total >= cap



def _since_param(session: Session, since: datetime) -> Any:
    return format_utc(since) if session.get_bind().dialect.name == "sqlite" else since


def status_counts_by_agent(session: Session, since: datetime) -> dict[str, dict[str, int]]:
    """Runs per agent and status since the hour `since`, from the rollups (no duration histograms)."""
    out: dict[str, dict[str, int]] = {}
    # On SQLite, `+agent_name` keeps the planner on the primary key's hour range
    # instead of scanning the whole (agent_name, hour) index (300 ms → 1 ms at 1M runs).
    group = "+agent_name, +status" if session.get_bind().dialect.name == "sqlite" else "agent_name, status"
    rows = session.execute(
        text(f"SELECT agent_name, status, SUM(runs) FROM run_rollups WHERE hour >= :since "
             f"GROUP BY {group} HAVING SUM(runs) <> 0"),
        {"since": _since_param(session, since)},
    )
    for agent, status, n in rows:
        out.setdefault(agent, {})[status] = int(n)
    return out


def daily_counts_by_agent(session: Session, since: datetime) -> dict[str, list[dict[str, Any]]]:
    """Per agent, runs per UTC day and status since `since` ({"start", "counts"} buckets), from the rollups."""
    day = "substr(hour, 1, 10)" if session.get_bind().dialect.name == "sqlite" else "date_trunc('day', hour, 'UTC')"
    out: dict[str, dict[Any, dict[str, int]]] = {}
    rows = session.execute(
        text(f"SELECT agent_name, {day} AS day, status, SUM(runs) FROM run_rollups WHERE hour >= :since "
             f"GROUP BY day, agent_name, status HAVING SUM(runs) <> 0"),
        {"since": _since_param(session, since)},
    )
    for agent, start, status, n in rows:
        out.setdefault(agent, {}).setdefault(start, {})[status] = int(n)
    return {agent: [{"start": start, "counts": counts} for start, counts in sorted(days.items())]
            for agent, days in out.items()}
