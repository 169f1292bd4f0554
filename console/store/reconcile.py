"""Rollups recomputed from agent_runs: the full rebuild, the hours other tools changed,
and the check that the rollups equal a recomputation.

`python -m console rollups rebuild|reconcile|check` is registered here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from console.core.progress import Progress, quiet
from console.store import watermark
from console.store.rollup_tables import (
    FACETS,
    ITEM_COLUMNS,
    LOG_GAMMA,
    ROLLUP_SUMS,
    SUM_COLUMNS,
    TABLES,
    add_on_conflict,
    bucket_expr,
    day_expr,
    facet_rows,
    hour_expr,
)
from console.store.rollups import Delta, _period, grains, hour_of


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # Writers that started earlier commit first; later ones add their deltas after us.
        session.execute(text("LOCK TABLE " + ", ".join(TABLES) + " IN EXCLUSIVE MODE"))


def _recompute(session: Session, where: str, params: dict[str, Any], *, facet_totals: bool = True) -> None:
    """Recompute the hour grain for the agent_runs rows matching `where` (on start_time).

    `facet_totals`: move the all-time facet counts by the difference (else the caller
    recomputes them)."""
    dialect = session.get_bind().dialect.name
    hour = hour_expr(dialect)
    hour_where = where.replace("start_time", "hour")
    if facet_totals:
        _add_facet_hours_to_totals(session, hour_where, params, sign="-")
    session.execute(text(f"DELETE FROM run_facet_rollups WHERE {hour_where}"), params)
    session.execute(text(f"DELETE FROM run_rollups WHERE {hour_where}"), params)
    session.execute(text(f"DELETE FROM run_rollup_durations WHERE {hour_where}"), params)
    session.execute(
        text(
            "INSERT INTO run_rollups (hour, agent_name, status, runs, duration_ms_sum, "
            + ", ".join(ITEM_COLUMNS)
            + f") SELECT {hour}, agent_name, status, {ROLLUP_SUMS} FROM agent_runs WHERE {where} "
            "GROUP BY 1, 2, 3"
        ),
        params,
    )
    session.execute(
        text(
            "INSERT INTO run_rollup_durations (hour, agent_name, status, bucket, runs) "
            f"SELECT {hour}, agent_name, status, {bucket_expr(dialect)}, count(*) FROM agent_runs "
            f"WHERE {where} AND status <> 'running' GROUP BY 1, 2, 3, 4"
        ),
        {**params, "log_gamma": LOG_GAMMA},
    )
    session.execute(
        text(f"INSERT INTO run_facet_rollups (hour, facet, value, status, runs) {facet_rows(dialect, where, hourly=True)}"),
        params,
    )
    if facet_totals:
        _add_facet_hours_to_totals(session, hour_where, params, sign="")


def _add_facet_hours_to_totals(session: Session, hour_where: str, params: dict[str, Any], sign: str) -> None:
    """Add (sign "") or subtract (sign "-") the facet counts of these hours to the all-time ones."""
    session.execute(
        text(
            f"INSERT INTO run_facet_totals (facet, value, status, runs) SELECT facet, value, status, {sign}sum(runs) "
            f"FROM run_facet_rollups WHERE {hour_where} GROUP BY 1, 2, 3 {add_on_conflict('run_facet_totals')}"
        ),
        params,
    )


def _recompute_days(session: Session, where: str, params: dict[str, Any]) -> None:
    """Recompute the day grain from the hour grain (`where` on column `day`)."""
    dialect = session.get_bind().dialect.name
    day = day_expr(dialect, "hour")
    hour_where = where.replace("day", "hour")
    sums = ", ".join(f"sum({c})" for c in SUM_COLUMNS)
    session.execute(text(f"DELETE FROM run_rollup_days WHERE {where}"), params)
    session.execute(text(f"DELETE FROM run_rollup_day_durations WHERE {where}"), params)
    session.execute(
        text(
            f"INSERT INTO run_rollup_days (day, agent_name, status, {', '.join(SUM_COLUMNS)}) "
            f"SELECT {day}, agent_name, status, {sums} FROM run_rollups WHERE {hour_where} GROUP BY 1, 2, 3"
        ),
        params,
    )
    session.execute(
        text(
            "INSERT INTO run_rollup_day_durations (day, agent_name, bucket, runs) "
            f"SELECT {day}, agent_name, bucket, sum(runs) FROM run_rollup_durations WHERE {hour_where} "
            "GROUP BY 1, 2, 3"
        ),
        params,
    )


def _recompute_totals(session: Session) -> None:
    """Recompute the all-time grain from the day grain."""
    sums = ", ".join(f"sum({c})" for c in SUM_COLUMNS)
    session.execute(text("DELETE FROM run_rollup_totals"))
    session.execute(text("DELETE FROM run_rollup_total_durations"))
    session.execute(
        text(
            f"INSERT INTO run_rollup_totals (agent_name, status, {', '.join(SUM_COLUMNS)}) "
            f"SELECT agent_name, status, {sums} FROM run_rollup_days GROUP BY 1, 2"
        )
    )
    session.execute(
        text(
            "INSERT INTO run_rollup_total_durations (agent_name, bucket, runs) "
            "SELECT agent_name, bucket, sum(runs) FROM run_rollup_day_durations GROUP BY 1, 2"
        )
    )


def rebuild(session: Session, progress: Progress = quiet) -> int:
    """Recompute every rollup from agent_runs; returns the number of (agent, status, hour) groups."""
    _lock(session)
    if session.get_bind().dialect.name == "sqlite":
        progress("rollups: indexing runs not indexed yet")
        watermark.index_without_counting(session)  # the recomputation below counts every run
    progress("rollups: recomputing the hours")
    _recompute(session, "1 = 1", {}, facet_totals=False)
    session.execute(text("DELETE FROM run_facet_totals"))
    session.execute(
        text(
            "INSERT INTO run_facet_totals (facet, value, status, runs) "
            "SELECT facet, value, status, sum(runs) FROM run_facet_rollups GROUP BY 1, 2, 3"
        )
    )
    progress("rollups: recomputing the days")
    _recompute_days(session, "1 = 1", {})
    progress("rollups: recomputing the totals")
    _recompute_totals(session)
    session.execute(text("DELETE FROM rollup_dirty"))
    return session.execute(text("SELECT count(*) FROM run_rollups")).scalar_one()


def recompute_hours(session: Session, hours: Iterable[datetime]) -> None:
    """Recompute the rollups of these hours from agent_runs (and their days, and the totals)."""
    dialect = session.get_bind().dialect.name
    hours = sorted(set(hours))
    if not hours:
        return
    _lock(session)
    for hour in hours:
        _recompute(
            session,
            "start_time >= :lo AND start_time < :hi",
            {"lo": _period(hour, dialect), "hi": _period(hour + timedelta(hours=1), dialect)},
        )
    for day in sorted({h.replace(hour=0) for h in hours}):
        _recompute_days(
            session,
            "day >= :lo AND day < :hi",
            {"lo": _period(day, dialect), "hi": _period(day + timedelta(days=1), dialect)},
        )
    _recompute_totals(session)


def dirty_hours(session: Session, limit: int = 1000) -> list[datetime]:
    """Hours changed by someone who did not account for it (another tool, a migration)."""
    values = (
        session.execute(text("SELECT hour FROM rollup_dirty WHERE changes <> 0 ORDER BY hour LIMIT :n"), {"n": limit})
        .scalars()
        .all()
    )
    return [hour_of(v) for v in values if hour_of(v) is not None]


def reconcile_dirty(session: Session, limit: int = 1000) -> int:
    """Recompute the dirty hours (at most `limit`) and clear their marks; returns how many."""
    if session.get_bind().dialect.name == "sqlite":
        watermark.catch_up(session)  # runs not counted yet (ours from single POSTs, other tools')
    if session.execute(text("SELECT 1 FROM rollup_guard LIMIT 1")).first() is not None:
        # A guard committed by a crashed writer hid other tools' changes: start over.
        session.execute(text("DELETE FROM rollup_guard"))
        rebuild(session)
        return -1
    raw = (
        session.execute(text("SELECT hour FROM rollup_dirty WHERE changes <> 0 ORDER BY hour LIMIT :n"), {"n": limit})
        .scalars()
        .all()
    )
    hours = [h for h in (hour_of(v) for v in raw) if h is not None]
    recompute_hours(session, hours)
    if raw:
        session.execute(text("DELETE FROM rollup_dirty WHERE hour = :h"), [{"h": v} for v in raw])
    session.execute(text("DELETE FROM rollup_dirty WHERE changes = 0"))
    return len(hours)


def has_dirty(session: Session) -> bool:
    """True when some hour needs recomputing (or a guard row was left behind, or new rows wait)."""
    if session.get_bind().dialect.name == "sqlite" and watermark.behind(session):
        return True
    return (
        session.execute(
            text("SELECT 1 FROM rollup_dirty WHERE changes <> 0 UNION ALL SELECT 1 FROM rollup_guard LIMIT 1")
        ).first()
        is not None
    )


def ensure_fresh(db) -> int:
    """Reconcile dirty hours before rollups are read (cheap when nothing is dirty)."""
    with db.read() as session:
        if not has_dirty(session):
            return 0
    return db.write(reconcile_dirty)


def recompute_from_runs(session: Session) -> dict[str, dict]:
    """What the rollups should hold, computed from agent_runs in Python (for checks and tests)."""
    delta = Delta()
    columns = "agent_name, status, start_time, duration_ms, " + ", ".join((*ITEM_COLUMNS, *FACETS))
    for row in session.execute(text(f"SELECT {columns} FROM agent_runs")).mappings():
        delta.add(row, +1)
    return grains(delta)


def stored_rollups(session: Session) -> dict[str, dict]:
    """The rollups as stored, in the shape of recompute_from_runs."""
    out: dict[str, dict] = {}
    for table, (keys, sums) in TABLES.items():
        groups = {}
        for r in session.execute(text(f"SELECT * FROM {table}")).mappings():
            values = [int(r[c]) for c in sums]
            if any(values):
                groups[tuple(hour_of(r[k]) if k in ("hour", "day") else r[k] for k in keys)] = values
        out[table] = groups
    return out


def scheduled_reconcile(db, settings) -> dict[str, Any]:
    """A scheduler job (JobFunction): recompute the hours other tools changed.

    Cheap when nothing is dirty (one indexed probe of a tiny table). Reads of the
    rollups (stats, /metrics) reconcile first anyway; this keeps them quick.
    """
    hours = ensure_fresh(db)
    return {"hours_recomputed": hours}
