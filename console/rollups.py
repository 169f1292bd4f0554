"""Rollups: run counts, item sums and duration histograms per (agent, status, hour).

Statistics over a million runs cannot scan `agent_runs`; they read these tables.

Write path: every code path that inserts, updates or deletes runs calls
`record_changes(session, changes)` in the same transaction, with one
`(old_row_or_None, new_row_or_None)` pair per run it touched. The batch is
aggregated first, then one upsert per group (never one per row, no row triggers
that upsert).

Durations go into fixed log-scale buckets: bucket 0 holds 0 ms, bucket b >= 1 holds
[GAMMA**(b-1), GAMMA**b) ms with GAMMA = 2**(1/4). A percentile is reported as the
geometric middle of its bucket, so it is within 9.1 % (sqrt(GAMMA) - 1) of the
true value. `running` runs are counted but have no duration.

Direct writes (SQLite only): other tools write and delete rows in the file. The
triggers of migration 0004 count, per hour, every row change of the columns rolled
up here into `rollup_dirty`; `record_changes` subtracts the changes it accounted
for. An hour whose count is not zero afterwards was changed by someone else, and
`reconcile_dirty` recomputes it from `agent_runs`.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Optional

from sqlalchemy import text
from sqlalchemy.orm import Session

from .timeutil import format_utc, parse_timestamp

GAMMA = 2**0.25
_LOG_GAMMA = math.log(GAMMA)
MAX_BUCKET = 200  # 2**50 ms: anything longer lands here
ITEM_COLUMNS = ("items_discovered", "items_succeeded", "items_failed", "items_skipped")
# The columns whose change moves a run between rollup groups or sums.
ROLLED_COLUMNS = ("agent_name", "status", "start_time", "duration_ms", *ITEM_COLUMNS)

Change = tuple[Optional[Mapping[str, Any]], Optional[Mapping[str, Any]]]


def duration_bucket(duration_ms: Any) -> int:
    """The histogram bucket of a duration in milliseconds."""
    try:
        value = float(duration_ms or 0)
    except (TypeError, ValueError):
        return 0
    if value < 1:
        return 0
    return min(MAX_BUCKET, int(math.floor(math.log(value) / _LOG_GAMMA + 1e-9)) + 1)


def bucket_value(bucket: int) -> float:
    """The value reported for a bucket: the geometric middle of its range."""
    if bucket <= 0:
        return 0.0
    return GAMMA ** (bucket - 1) * math.sqrt(GAMMA)


def hour_of(value: Any) -> Optional[datetime]:
    """The start of the UTC hour of a time (datetime or stored text)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = parse_timestamp(value, require_zone=False)
        except ValueError:
            return None
    if value.tzinfo is not UTC:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(minute=0, second=0, microsecond=0)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _rolled(row: Mapping[str, Any]) -> tuple:
    start = row.get("start_time")
    if isinstance(start, str):
        try:
            start = parse_timestamp(start, require_zone=False)
        except ValueError:
            pass
    return (
        row.get("agent_name"),
        row.get("status") or "running",
        start,
        _int(row.get("duration_ms")),
        *(_int(row.get(name)) for name in ITEM_COLUMNS),
    )


class Delta:
    """The aggregated effect of a batch of changes (additive: add a row with sign ±1)."""

    def __init__(self) -> None:
        self.groups: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
        self.buckets: dict[tuple, int] = defaultdict(int)
        self.touched_hours: dict[datetime, int] = defaultdict(int)

    def copy(self) -> Delta:
        other = Delta()
        for key, values in self.groups.items():
            other.groups[key] = list(values)
        other.buckets.update(self.buckets)
        other.touched_hours.update(self.touched_hours)
        return other

    def add(self, row: Mapping[str, Any], sign: int) -> None:
        hour = hour_of(row.get("start_time"))
        agent = row.get("agent_name")
        if hour is None or agent is None:
            return
        status = row.get("status") or "running"
        group = self.groups[(agent, status, hour)]
        group[0] += sign
        duration = _int(row.get("duration_ms"))
        group[1] += sign * duration
        for i, name in enumerate(ITEM_COLUMNS):
            group[2 + i] += sign * _int(row.get(name))
        if status != "running":
            self.buckets[(agent, status, hour, duration_bucket(duration))] += sign


@contextlib.contextmanager
def own_writes(session: Session) -> Iterator[None]:
    """Within this block, this transaction's run writes are accounted for by record_changes.

    On SQLite it puts a row into rollup_guard, which keeps the dirty-hour triggers
    quiet (they cost more per row than the whole rollup upsert per batch), and
    takes it out again before the block ends. Call record_changes for every run
    written inside it.
    """
    if session.get_bind().dialect.name != "sqlite" or session.info.get("rollup_guarded"):
        yield
        return
    session.execute(text("INSERT INTO rollup_guard (id) VALUES (1)"))
    session.info["rollup_guarded"] = True
    try:
        yield
    finally:
        session.info.pop("rollup_guarded", None)
    session.execute(text("DELETE FROM rollup_guard"))


def _period(value: datetime, dialect: str) -> Any:
    return format_utc(value) if dialect == "sqlite" else value


def record_changes(session: Session, changes: Iterable[Change]) -> None:
    """Apply the rollup effect of run writes made in this session's transaction."""
    delta = Delta()
    for old, new in changes:
        if old is not None and new is not None and _rolled(old) == _rolled(new):
            continue
        if old is not None:
            delta.add(old, -1)
            hour = hour_of(old.get("start_time"))
            if hour is not None:
                delta.touched_hours[hour] += 1
        if new is not None:
            delta.add(new, +1)
            hour = hour_of(new.get("start_time"))
            if hour is not None:
                delta.touched_hours[hour] += 1
    apply_delta(session, delta)


SUM_COLUMNS = ("runs", "duration_ms_sum", *ITEM_COLUMNS)
# table: (key columns, summed columns)
TABLES = {
    "run_rollups": (("hour", "agent_name", "status"), SUM_COLUMNS),
    "run_rollup_durations": (("hour", "agent_name", "status", "bucket"), ("runs",)),
    "run_rollup_days": (("day", "agent_name", "status"), SUM_COLUMNS),
    "run_rollup_day_durations": (("day", "agent_name", "bucket"), ("runs",)),
    "run_rollup_totals": (("agent_name", "status"), SUM_COLUMNS),
    "run_rollup_total_durations": (("agent_name", "bucket"), ("runs",)),
}


def _upsert(session: Session, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys, sums = TABLES[table]
    columns = (*keys, *sums)
    if session.get_bind().dialect.name == "sqlite":
        # Straight to the driver: a batch can hold a thousand groups, and SQLAlchemy's
        # per-row parameter work cost more than SQLite's upsert.
        session.connection().exec_driver_sql(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
            + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in sums),
            [tuple(row[c] for c in columns) for row in rows],
        )
        return
    session.execute(
        text(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
            + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in sums)
        ),
        rows,
    )


def grains(delta: Delta) -> dict[str, dict[tuple, list[int]]]:
    """The delta at every grain: table → {key tuple (in TABLES order): summed values}."""
    out: dict[str, dict[tuple, list[int]]] = {name: {} for name in TABLES}

    def add(table: str, key: tuple, values: Sequence[int]) -> None:
        target = out[table].setdefault(key, [0] * len(values))
        for i, v in enumerate(values):
            target[i] += v

    for (agent, status, hour), values in delta.groups.items():
        if any(values):
            add("run_rollups", (hour, agent, status), values)
            add("run_rollup_days", (hour.replace(hour=0), agent, status), values)
            add("run_rollup_totals", (agent, status), values)
    for (agent, status, hour, bucket), n in delta.buckets.items():
        if n:
            add("run_rollup_durations", (hour, agent, status, bucket), [n])
            add("run_rollup_day_durations", (hour.replace(hour=0), agent, bucket), [n])
            add("run_rollup_total_durations", (agent, bucket), [n])
    return {table: {k: v for k, v in groups.items() if any(v)} for table, groups in out.items()}


def apply_delta(session: Session, delta: Delta) -> None:
    """Write an aggregated delta: one upsert per group, at each grain (hour, day, all time)."""
    dialect = session.get_bind().dialect.name
    for table, groups in grains(delta).items():
        keys, sums = TABLES[table]
        rows = []
        for key, values in groups.items():
            row = dict(zip(keys, key, strict=True))
            for name in ("hour", "day"):
                if name in row:
                    row[name] = _period(row[name], dialect)
            row.update(zip(sums, values, strict=True))
            rows.append(row)
        _upsert(session, table, rows)
    if dialect == "sqlite" and delta.touched_hours and not session.info.get("rollup_guarded"):
        _settle_dirty(session, delta.touched_hours)


def _settle_dirty(session: Session, touched: Mapping[datetime, int]) -> None:
    """Subtract the row changes accounted for from the triggers' per-hour counts."""
    params = [{"hour": format_utc(hour), "n": n} for hour, n in touched.items()]
    session.execute(
        text(
            "INSERT INTO rollup_dirty (hour, changes) VALUES (:hour, -:n) "
            "ON CONFLICT (hour) DO UPDATE SET changes = rollup_dirty.changes - :n"
        ),
        params,
    )
    session.execute(text("DELETE FROM rollup_dirty WHERE changes = 0 AND hour = :hour"), params)


def rows_for_changes(rows: Sequence[Mapping[str, Any]]) -> list[Change]:
    """Pairs for freshly inserted rows."""
    return [(None, row) for row in rows]


# Recomputing from agent_runs: the full rebuild, and the hours marked dirty.

_ROLLUP_SUMS = "count(*), coalesce(sum(duration_ms), 0), " + ", ".join(f"coalesce(sum({n}), 0)" for n in ITEM_COLUMNS)


def _hour_expr(dialect: str) -> str:
    if dialect == "sqlite":
        return "substr(replace(start_time, ' ', 'T'), 1, 13) || ':00:00.000000+00:00'"
    return "date_trunc('hour', start_time, 'UTC')"


def _bucket_expr(dialect: str) -> str:
    least = "min" if dialect == "sqlite" else "least"
    return (
        "CASE WHEN duration_ms IS NULL OR duration_ms < 1 THEN 0 ELSE "
        f"{least}({MAX_BUCKET}, CAST(floor(ln(duration_ms) / :log_gamma + 1e-9) AS INTEGER) + 1) END"
    )


def _day_expr(dialect: str, column: str) -> str:
    if dialect == "sqlite":
        return f"substr({column}, 1, 10) || 'T00:00:00.000000+00:00'"
    return f"date_trunc('day', {column}, 'UTC')"


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # Writers that started earlier commit first; later ones add their deltas after us.
        session.execute(text("LOCK TABLE " + ", ".join(TABLES) + " IN EXCLUSIVE MODE"))


def _recompute(session: Session, where: str, params: dict[str, Any]) -> None:
    """Recompute the hour grain for the agent_runs rows matching `where` (on start_time)."""
    dialect = session.get_bind().dialect.name
    hour = _hour_expr(dialect)
    hour_where = where.replace("start_time", "hour")
    session.execute(text(f"DELETE FROM run_rollups WHERE {hour_where}"), params)
    session.execute(text(f"DELETE FROM run_rollup_durations WHERE {hour_where}"), params)
    session.execute(
        text(
            "INSERT INTO run_rollups (hour, agent_name, status, runs, duration_ms_sum, "
            + ", ".join(ITEM_COLUMNS)
            + f") SELECT {hour}, agent_name, status, {_ROLLUP_SUMS} FROM agent_runs WHERE {where} "
            "GROUP BY 1, 2, 3"
        ),
        params,
    )
    session.execute(
        text(
            "INSERT INTO run_rollup_durations (hour, agent_name, status, bucket, runs) "
            f"SELECT {hour}, agent_name, status, {_bucket_expr(dialect)}, count(*) FROM agent_runs "
            f"WHERE {where} AND status <> 'running' GROUP BY 1, 2, 3, 4"
        ),
        {**params, "log_gamma": _LOG_GAMMA},
    )


def _recompute_days(session: Session, where: str, params: dict[str, Any]) -> None:
    """Recompute the day grain from the hour grain (`where` on column `day`)."""
    dialect = session.get_bind().dialect.name
    day = _day_expr(dialect, "hour")
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


def rebuild(session: Session) -> int:
    """Recompute every rollup from agent_runs; returns the number of (agent, status, hour) groups."""
    _lock(session)
    _recompute(session, "1 = 1", {})
    _recompute_days(session, "1 = 1", {})
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
    """True when some hour needs recomputing (or a guard row was left behind)."""
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
    columns = "agent_name, status, start_time, duration_ms, " + ", ".join(ITEM_COLUMNS)
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


def _command(settings, options) -> int:
    """`python -m console rollups rebuild|reconcile|check`."""
    from .db import Database, make_plain_engine

    db = Database(settings, make_plain_engine(settings))
    try:
        if options.action == "rebuild":
            groups = db.write(rebuild)
            print(f"rollups rebuilt: {groups} (agent, status, hour) groups")
        elif options.action == "reconcile":
            hours = db.write(lambda session: reconcile_dirty(session, limit=1_000_000))
            print(f"rollups reconciled: {hours} hour(s) recomputed")
        else:
            with db.read() as session:
                expected, stored = recompute_from_runs(session), stored_rollups(session)
            if expected == stored:
                print("rollups match agent_runs")
                return 0
            print("rollups differ from agent_runs; run `python -m console rollups rebuild`")
            return 1
    finally:
        db.dispose()
    return 0


def _register() -> None:
    from .cli import arg, command

    command(
        "rollups",
        "Rebuild the run rollups from agent_runs, reconcile dirty hours, or check them.",
        arg("action", choices=["rebuild", "reconcile", "check"]),
    )(_command)


_register()


def scheduled_reconcile(db, settings) -> dict[str, Any]:
    """A scheduler job (JobFunction): recompute the hours other tools changed.

    Cheap when nothing is dirty (one indexed probe of a tiny table). Reads of the
    rollups (stats, /metrics) reconcile first anyway; this keeps them quick.
    """
    hours = ensure_fresh(db)
    return {"hours_recomputed": hours}
