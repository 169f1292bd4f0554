"""Run statistics per agent and overall, read from the rollups (never a scan of agent_runs)."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Optional

from sqlalchemy import text
from sqlalchemy.orm import Session

from console.core.timeutil import format_utc, utcnow
from console.store.rollup_tables import FACETS, ITEM_COLUMNS, SUM_COLUMNS
from console.store.rollups import bucket_value, hour_of

DEFAULT_DAYS = 7
ITEM_NAMES = tuple(name.removeprefix("items_") for name in ITEM_COLUMNS)


def percentile(histogram: Mapping[int, int], fraction: float) -> Optional[int]:
    """The nearest-rank percentile of a duration histogram (bucket → runs), in ms."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return int(round(bucket_value(bucket)))
    return None


def _summary(
    counts: Mapping[str, int], items: Mapping[str, int], duration_sum: int, histogram: Mapping[int, int]
) -> dict[str, Any]:
    total = sum(counts.values())
    finished = total - counts.get("running", 0)
    return {
        "total": total,
        "counts": dict(sorted(counts.items())),
        "success_rate": round(counts.get("success", 0) / finished, 4) if finished else None,
        "avg_duration_ms": int(round(duration_sum / finished)) if finished else None,
        "p50_ms": percentile(histogram, 0.50),
        "p95_ms": percentile(histogram, 0.95),
        "items": dict(items),
    }


def range_start(since: Optional[datetime] = None, now: Optional[datetime] = None) -> datetime:
    """Where run_stats' range starts: `since` rounded down to its hour, by default 7 days ago."""
    return hour_of(since or (now or utcnow()) - timedelta(days=DEFAULT_DAYS))


def bucket_count(answer: dict[str, Any]) -> int:
    """How many time buckets a run_stats answer holds (its size, near enough)."""
    return len(answer["overall"]["buckets"]) + sum(len(block["buckets"]) for block in answer["agents"].values())


def run_stats(
    session: Session,
    *,
    agent_name: Optional[str] = None,
    agents: Optional[Sequence[str]] = None,
    since: Optional[datetime] = None,
    bucket: str = "day",
    now: Optional[datetime] = None,
    buckets: bool = True,
    durations: bool = True,
) -> dict[str, Any]:
    """Counts by status, success rate, p50/p95 duration, item sums and time buckets.

    `since` is rounded down to its hour (the rollups' finest grain); default: 7 days
    ago. Whole days are read from the day grain, the hours before the first whole
    day from the hour grain, so a long range reads a few thousand rows. Without
    `buckets` the time buckets are left empty, without `durations` the percentiles
    (neither is read). `agents` limits the answer to those agents (a page of them).
    """
    since = range_start(since, now)
    first_day = since if since.hour == 0 else since.replace(hour=0) + timedelta(days=1)
    dialect = session.get_bind().dialect.name

    params: dict[str, Any] = {"since": _stamp(since, dialect), "first_day": _stamp(first_day, dialect)}
    agent_filter = ""
    if agent_name is not None:
        agent_filter = " AND agent_name = :agent"
        params["agent"] = agent_name
    elif agents is not None:
        agent_filter = _among(agents, params)
    values = ", ".join(SUM_COLUMNS)
    sums = ", ".join(f"sum({n}) AS {n}" for n in SUM_COLUMNS)
    day_of_hour = (
        "substr(hour, 1, 10) || 'T00:00:00.000000+00:00'" if dialect == "sqlite" else ("date_trunc('day', hour, 'UTC')")
    )
    # One row per agent, status and day: the hours before the first whole day summed
    # per day, then the day grain. A few thousand rows even for a long range.
    day_rows = (
        f"SELECT agent_name, day_of_hour AS period, status, {sums} FROM ("
        f"SELECT agent_name, status, {day_of_hour} AS day_of_hour, {values} FROM run_rollups "
        f"WHERE hour >= :since AND hour < :first_day{agent_filter}) AS h GROUP BY agent_name, status, day_of_hour "
        f"UNION ALL SELECT agent_name, day AS period, status, {values} FROM run_rollup_days "
        f"WHERE day >= :first_day{agent_filter}"
    )
    if not buckets:
        totals = session.execute(
            text(f"SELECT agent_name, status, {sums} FROM ({day_rows}) AS d GROUP BY agent_name, status"), params
        ).all()
        folded: dict[Any, list[dict[str, Any]]] = {}
    elif bucket == "hour":
        # Totals from the day rows; the buckets from the hour grain in its key order
        # (hour, agent, status), so that the fold only appends.
        totals = session.execute(
            text(f"SELECT agent_name, status, {sums} FROM ({day_rows}) AS d GROUP BY agent_name, status"), params
        ).all()
        series = _plain_rows(
            session,
            f"SELECT agent_name, hour, status, runs FROM run_rollups WHERE hour >= :since{agent_filter} "
            "AND runs <> 0 ORDER BY hour, agent_name, status",
            params,
        )
        folded = _fold_series(series)
    else:
        rows = session.execute(text(f"{day_rows} ORDER BY period, agent_name, status"), params).all()
        totals = _sum_per_agent_and_status(rows)
        series = [(agent, period, status, int(runs)) for agent, period, status, runs, *_ in rows if runs]
        folded = _fold_series(series)
    # Grouped by bucket first: grouped by agent first, SQLite read the day grain by its
    # (agent_name, day) index from end to end instead of the range of days by its key.
    histograms = [] if not durations else session.execute(
        text(
            "SELECT agent_name, bucket, sum(runs) FROM run_rollup_durations "
            f"WHERE hour >= :since AND hour < :first_day{agent_filter} GROUP BY bucket, agent_name "
            "UNION ALL SELECT agent_name, bucket, sum(runs) FROM run_rollup_day_durations "
            f"WHERE day >= :first_day{agent_filter} GROUP BY bucket, agent_name"
        ),
        params,
    ).all()

    counts: dict[Any, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    items: dict[Any, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ITEM_NAMES, 0))
    durations: dict[Any, int] = defaultdict(int)
    for agent, status, runs, duration_sum, *item_sums in totals:
        if not runs:
            continue
        runs = int(runs)
        finished_ms = int(duration_sum or 0) if status != "running" else 0
        for key in (agent, None):
            counts[key][status] += runs
            durations[key] += finished_ms
            block_items = items[key]
            for name, value in zip(ITEM_NAMES, item_sums, strict=True):
                block_items[name] += int(value or 0)
    hist: dict[Any, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for agent, bucket_index, runs in histograms:
        hist[agent][int(bucket_index)] += int(runs)
        hist[None][int(bucket_index)] += int(runs)

    def block(key: Optional[str]) -> dict[str, Any]:
        out = _summary(counts[key], items[key], durations[key], hist[key])
        out["buckets"] = folded.get(key, [])
        return out

    agents = sorted(k for k, c in counts.items() if k is not None and any(c.values()))
    return {
        "since": format_utc(since),
        "bucket": bucket,
        "overall": block(None),
        "agents": {name: block(name) for name in agents},
    }


def _among(agents: Sequence[str], params: dict[str, Any]) -> str:
    """` AND agent_name IN (...)` for `agents`, their values added to `params` (none: matches nothing)."""
    names = {f"agent_{i}": name for i, name in enumerate(agents)}
    params.update(names)
    return f" AND agent_name IN ({', '.join(':' + key for key in names)})" if names else " AND 1 = 0"


def _plain_rows(session: Session, sql: str, params: Mapping[str, Any]) -> list[tuple]:
    """The rows of a long read as plain tuples straight from the driver, skipping a Row
    object per row (SQLite's driver takes the same :name parameters; psycopg's %(name)s)."""
    driver = session.connection().connection.driver_connection
    if session.get_bind().dialect.name == "sqlite":
        return driver.execute(sql, params).fetchall()
    with driver.cursor() as cursor:
        cursor.execute(re.sub(r":(\w+)", r"%(\1)s", sql), params)
        return cursor.fetchall()


def _sum_per_agent_and_status(rows: Iterable[tuple]) -> list[tuple]:
    """Rows (agent, period, status, runs, duration_ms_sum, *items) summed over periods:
    (agent, status, runs, duration_ms_sum, *items)."""
    out: dict[tuple[str, str], list[int]] = {}
    for agent, _period, status, *values in rows:
        sums = out.get((agent, status))
        if sums is None:
            out[(agent, status)] = [int(v or 0) for v in values]
        else:
            for i, value in enumerate(values):
                sums[i] += int(value or 0)
    return [(agent, status, *values) for (agent, status), values in out.items()]


def _fold_series(series: Iterable[tuple[str, Any, str, int]]) -> dict[Any, list[dict[str, Any]]]:
    """Rows (agent, period, status, runs) in order of period, agent and status, as the
    bucket list of each agent and, under None, of all agents together."""
    buckets: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    overall = buckets[None]
    last_period: Any = object()
    start = ""
    overall_counts: dict[str, int] = {}
    current: dict[str, dict[str, int]] = {}  # each agent's counts in the current period
    for agent, period, status, runs in series:
        if period != last_period:
            start, last_period, current = _period_start(period), period, {}
            overall_counts = {}
            overall.append({"start": start, "counts": overall_counts})
        counts = current.get(agent)
        if counts is None:
            counts = current[agent] = {}
            buckets[agent].append({"start": start, "counts": counts})
        counts[status] = runs
        overall_counts[status] = overall_counts.get(status, 0) + runs
    for bucket in overall:  # statuses arrive sorted per agent; across agents, sort them
        bucket["counts"] = {status: n for status, n in sorted(bucket["counts"].items()) if n}
    buckets[None] = [bucket for bucket in overall if bucket["counts"]]
    return buckets


def _period_start(period: Any) -> str:
    """A rollup period (SQLite: its stored text, already in the stored form; PostgreSQL: a
    datetime) as the buckets' `start`."""
    if isinstance(period, str) and len(period) == 32 and period.endswith(":00:00.000000+00:00"):
        return period
    return format_utc(hour_of(period))


def totals_by_agent(session: Session) -> dict[str, dict[str, int]]:
    """All-time run counts per agent and status, from the all-time grain."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for agent, status, runs in session.execute(
        text("SELECT agent_name, status, runs FROM run_rollup_totals WHERE runs <> 0")
    ):
        out[agent][status] = int(runs)
    return dict(out)


def daily_counts_by_agent(
    session: Session, first_day: datetime, agents: Optional[Sequence[str]] = None
) -> dict[str, dict[date, dict[str, int]]]:
    """Runs per agent, day and status from the UTC day of `first_day` on, from the day grain;
    of every agent, or of `agents`."""
    dialect = session.get_bind().dialect.name
    start = hour_of(first_day).replace(hour=0)
    out: dict[str, dict[date, dict[str, int]]] = defaultdict(dict)
    days: dict[Any, date] = {}
    params: dict[str, Any] = {"first_day": _stamp(start, dialect)}
    among = "" if agents is None else _among(agents, params)
    sql = f"SELECT agent_name, day, status, runs FROM run_rollup_days WHERE day >= :first_day AND runs <> 0{among}"
    for agent, day, status, runs in _plain_rows(session, sql, params):
        when = days.get(day)
        if when is None:
            when = days[day] = hour_of(day).date()
        out[agent].setdefault(when, {})[status] = int(runs)
    return dict(out)


def status_counts(
    session: Session,
    *,
    agent_name: Optional[str] = None,
    facet: Optional[tuple[str, str]] = None,
    since: Optional[datetime] = None,
) -> dict[str, int]:
    """Runs per status of every agent, of one agent, or of one `facet` (column, value), one of
    FACETS; since the hour of `since`, else all time. From the rollups: a few hundred rows
    whatever the number of runs (for a facet, one per status and hour of the range).
    """
    dialect = session.get_bind().dialect.name
    params: dict[str, Any] = {}
    if facet is not None:
        if facet[0] not in FACETS:
            raise ValueError(f"not a counted facet: {facet[0]!r}")
        params.update(facet=facet[0], value=facet[1])
        where = "facet = :facet AND value = :value"
        if since is None:
            sql = f"SELECT status, runs FROM run_facet_totals WHERE {where}"
        else:
            params["since"] = _stamp(hour_of(since), dialect)
            sql = f"SELECT status, sum(runs) FROM run_facet_rollups WHERE {where} AND hour >= :since GROUP BY status"
    else:
        agent = ""
        if agent_name is not None:
            agent, params["agent"] = " AND agent_name = :agent", agent_name
        if since is None:
            sql = f"SELECT status, sum(runs) FROM run_rollup_totals WHERE 1 = 1{agent} GROUP BY status"
        else:
            # The hours before the first whole day from the hour grain, then the day grain.
            start = hour_of(since)
            first_day = start if start.hour == 0 else start.replace(hour=0) + timedelta(days=1)
            params.update(since=_stamp(start, dialect), first_day=_stamp(first_day, dialect))
            sql = (
                "SELECT status, sum(runs) FROM (SELECT status, runs FROM run_rollups "
                f"WHERE hour >= :since AND hour < :first_day{agent} UNION ALL SELECT status, runs "
                f"FROM run_rollup_days WHERE day >= :first_day{agent}) AS r GROUP BY status"
            )
    return {status: int(runs) for status, runs in session.execute(text(sql), params) if runs}


def _stamp(value: datetime, dialect: str) -> Any:
    return format_utc(value) if dialect == "sqlite" else value


def all_time_histogram(session: Session) -> dict[int, int]:
    return {
        int(b): int(n)
        for b, n in session.execute(
            text("SELECT bucket, sum(runs) FROM run_rollup_total_durations GROUP BY bucket HAVING sum(runs) <> 0")
        )
    }

