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


class _Delta:
    """The aggregated effect of a batch of changes."""

    def __init__(self) -> None:
        self.groups: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
        self.buckets: dict[tuple, int] = defaultdict(int)
        self.touched_hours: dict[datetime, int] = defaultdict(int)

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
    delta = _Delta()
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


def apply_delta(session: Session, delta: _Delta) -> None:
    """Write an aggregated delta: one upsert per group and bucket."""
    dialect = session.get_bind().dialect.name
    groups = [
        {
            "agent_name": agent,
            "status": status,
            "hour": _period(hour, dialect),
            "runs": v[0],
            "duration_ms_sum": v[1],
            **{name: v[2 + i] for i, name in enumerate(ITEM_COLUMNS)},
        }
        for (agent, status, hour), v in delta.groups.items()
        if any(v)
    ]
    if groups:
        session.execute(
            text(
                "INSERT INTO run_rollups (agent_name, status, hour, runs, duration_ms_sum, "
                + ", ".join(ITEM_COLUMNS)
                + ") VALUES (:agent_name, :status, :hour, :runs, :duration_ms_sum, "
                + ", ".join(f":{n}" for n in ITEM_COLUMNS)
                + ") ON CONFLICT (hour, agent_name, status) DO UPDATE SET "
                "runs = run_rollups.runs + excluded.runs, "
                "duration_ms_sum = run_rollups.duration_ms_sum + excluded.duration_ms_sum, "
                + ", ".join(f"{n} = run_rollups.{n} + excluded.{n}" for n in ITEM_COLUMNS)
            ),
            groups,
        )
    buckets = [
        {"agent_name": agent, "status": status, "hour": _period(hour, dialect), "bucket": bucket, "runs": n}
        for (agent, status, hour, bucket), n in delta.buckets.items()
        if n
    ]
    if buckets:
        session.execute(
            text(
                "INSERT INTO run_rollup_durations (agent_name, status, hour, bucket, runs) "
                "VALUES (:agent_name, :status, :hour, :bucket, :runs) "
                "ON CONFLICT (hour, agent_name, status, bucket) DO UPDATE SET "
                "runs = run_rollup_durations.runs + excluded.runs"
            ),
            buckets,
        )
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


def _recompute(session: Session, where: str, params: dict[str, Any]) -> None:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # Writers that started earlier commit first; later ones add their deltas after us.
        session.execute(text("LOCK TABLE run_rollups, run_rollup_durations IN EXCLUSIVE MODE"))
    hour = _hour_expr(dialect)
    session.execute(text(f"DELETE FROM run_rollups WHERE {where.replace('start_time', 'hour')}"), params)
    session.execute(text(f"DELETE FROM run_rollup_durations WHERE {where.replace('start_time', 'hour')}"), params)
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


def rebuild(session: Session) -> int:
    """Recompute every rollup from agent_runs; returns the number of (agent, status, hour) groups."""
    _recompute(session, "1 = 1", {})
    session.execute(text("DELETE FROM rollup_dirty"))
    return session.execute(text("SELECT count(*) FROM run_rollups")).scalar_one()


def recompute_hours(session: Session, hours: Iterable[datetime]) -> None:
    """Recompute the rollups of these hours from agent_runs."""
    dialect = session.get_bind().dialect.name
    for hour in hours:
        end = hour + timedelta(hours=1)
        _recompute(
            session,
            "start_time >= :lo AND start_time < :hi",
            {"lo": _period(hour, dialect), "hi": _period(end, dialect)},
        )


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
    delta = _Delta()
    columns = "agent_name, status, start_time, duration_ms, " + ", ".join(ITEM_COLUMNS)
    for row in session.execute(text(f"SELECT {columns} FROM agent_runs")).mappings():
        delta.add(row, +1)
    groups = {(a, s, h): v for (a, s, h), v in delta.groups.items() if any(v)}
    buckets = {k: n for k, n in delta.buckets.items() if n}
    return {"groups": groups, "buckets": buckets}


def stored_rollups(session: Session) -> dict[str, dict]:
    """The rollups as stored, in the shape of recompute_from_runs."""
    groups = {}
    for r in session.execute(text("SELECT * FROM run_rollups")).mappings():
        values = [r["runs"], r["duration_ms_sum"], *(r[n] for n in ITEM_COLUMNS)]
        if any(values):
            groups[(r["agent_name"], r["status"], hour_of(r["hour"]))] = values
    buckets = {}
    for r in session.execute(text("SELECT * FROM run_rollup_durations")).mappings():
        if r["runs"]:
            buckets[(r["agent_name"], r["status"], hour_of(r["hour"]), r["bucket"])] = r["runs"]
    return {"groups": groups, "buckets": buckets}


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
            expected_groups = {k: list(v) for k, v in expected["groups"].items()}
            if expected_groups == stored["groups"] and expected["buckets"] == stored["buckets"]:
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
