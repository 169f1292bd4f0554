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
triggers of migration 0003 count, per hour, every row change of the columns rolled
up here into `rollup_dirty`; `record_changes` subtracts the changes it accounted
for. An hour whose count is not zero afterwards was changed by someone else, and
`reconcile_dirty` recomputes it from `agent_runs`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
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
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
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
    if dialect == "sqlite" and delta.touched_hours:
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
