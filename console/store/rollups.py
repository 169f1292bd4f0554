"""Rollups: run counts, item sums and duration histograms per (agent, status, hour).

Statistics over a million runs cannot scan `agent_runs`; they read these tables.

Write path: every code path that updates or deletes runs, and every batch
writer that inserts them, calls `record_changes(session, changes)` in the same
transaction (inside `own_writes`), with one
`(old_row_or_None, new_row_or_None)` pair per run it touched. The batch is
aggregated first, then one upsert per group (never one per row, no row triggers
that upsert). Single POSTs leave it out of their group commit: their runs stay
above the insert watermark until console/store/watermark.py `catch_up` counts them,
a few hundred at a time, before any read of the rollups.

Durations go into fixed log-scale buckets: bucket 0 holds 0 ms, bucket b >= 1 holds
[GAMMA**(b-1), GAMMA**b) ms with GAMMA = 2**(1/4). A percentile is reported as the
geometric middle of its bucket, so it is within 9.1 % (sqrt(GAMMA) - 1) of the
true value. `running` runs are counted but have no duration.

Direct writes (SQLite only): other tools write and delete rows in the file. The
update and delete triggers of migration 0004 count, per hour, every row change of
the columns rolled up here into `rollup_dirty`, and rows inserted by others are
counted by the watermark's catch-up like our own single POSTs; `record_changes`
subtracts the changes it accounted for. An hour whose count is not zero
afterwards was changed by someone else, and `reconcile_dirty` recomputes it from
`agent_runs`.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Optional

from sqlalchemy import text
from sqlalchemy.orm import Session

from console.core.timeutil import format_utc, parse_timestamp
from console.store import counters, watermark
from console.store.db import driver_cursor
from console.store.rollup_tables import FACETS, GAMMA, ITEM_COLUMNS, LOG_GAMMA, MAX_BUCKET, TABLES, add_on_conflict

# The columns whose change moves a run between rollup groups or sums.
ROLLED_COLUMNS = ("agent_name", "status", "start_time", "duration_ms", *ITEM_COLUMNS, *FACETS)

Change = tuple[Optional[Mapping[str, Any]], Optional[Mapping[str, Any]]]


def duration_bucket(duration_ms: Any) -> int:
    """The histogram bucket of a duration in milliseconds."""
    try:
        value = float(duration_ms or 0)
    except (TypeError, ValueError):
        return 0
    if value < 1:
        return 0
    return min(MAX_BUCKET, int(math.floor(math.log(value) / LOG_GAMMA + 1e-9)) + 1)


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
        *(row.get(name) for name in FACETS),
    )


class Delta:
    """The aggregated effect of a batch of changes (additive: add a row with sign ±1)."""

    def __init__(self) -> None:
        self.groups: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
        self.buckets: dict[tuple, int] = defaultdict(int)
        self.facets: dict[tuple, int] = defaultdict(int)  # (facet, value, status, hour): runs
        self.touched_hours: dict[datetime, int] = defaultdict(int)
        self.counters: dict[tuple[str, str, str], int] = defaultdict(int)  # console/store/counters.py

    def copy(self) -> Delta:
        other = Delta()
        for key, values in self.groups.items():
            other.groups[key] = list(values)
        other.buckets.update(self.buckets)
        other.facets.update(self.facets)
        other.touched_hours.update(self.touched_hours)
        other.counters.update(self.counters)
        return other

    def count(self, old: Optional[Mapping[str, Any]], new: Optional[Mapping[str, Any]], sign: int = 1) -> None:
        """Add what the change old -> new does to the monotonic run counters (sign -1 takes back
        a change assumed in advance that did not happen)."""
        for key in counters.increments(old, new):
            self.counters[key] += sign

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
        for facet in FACETS:
            value = row.get(facet)
            if value is not None:
                self.facets[(facet, value, status, hour)] += sign


@contextlib.contextmanager
def own_writes(session: Session, *, inserts_only: bool = False) -> Iterator[None]:
    """Within this block, this transaction's run writes are accounted for by record_changes.

    On SQLite it puts a row into rollup_guard, which keeps the dirty-hour triggers
    of updates and deletes quiet (they cost more per row than the whole rollup
    upsert per batch), and takes it out again before the block ends. Runs above the
    insert watermark are caught up first (so that a change to one finds it counted),
    and the runs inserted in the block are indexed for search and put under the
    watermark at the end (see console/store/watermark.py). Call record_changes for every
    run written inside it.
    `inserts_only`: the block only inserts runs, which fires none of those triggers,
    so the guard's two statements are left out.
    """
    if session.get_bind().dialect.name != "sqlite" or session.info.get("rollup_guarded"):
        yield
        return
    execute = driver_cursor(session).execute
    if not inserts_only:
        execute("INSERT INTO rollup_guard (id) VALUES (1)")
    through = watermark.catch_up(session)
    session.info["rollup_guarded"] = True
    try:
        yield
    finally:
        session.info.pop("rollup_guarded", None)
    watermark.advance(session, through)
    if not inserts_only:
        execute("DELETE FROM rollup_guard")


def _period(value: datetime, dialect: str) -> Any:
    return format_utc(value) if dialect == "sqlite" else value


def record_changes(session: Session, changes: Iterable[Change]) -> None:
    """Apply the rollup effect of run writes made in this session's transaction."""
    delta = Delta()
    for old, new in changes:
        delta.count(old, new)
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
            # An insert fires no trigger (new rows are found above the insert watermark).
            if hour is not None and old is not None:
                delta.touched_hours[hour] += 1
    apply_delta(session, delta)


def _upsert_sql(table: str, placeholder: Callable[[str], str]) -> str:
    keys, sums = TABLES[table]
    columns = (*keys, *sums)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(placeholder(c) for c in columns)}) "
        + add_on_conflict(table)
    )


_UPSERT_SQL = {
    "sqlite": {table: _upsert_sql(table, lambda _: "?") for table in TABLES},
    "postgresql": {table: _upsert_sql(table, lambda c: ":" + c) for table in TABLES},
}


def _upsert(session: Session, table: str, rows: list[tuple]) -> None:
    if not rows:
        return
    if session.get_bind().dialect.name == "sqlite":
        # Straight to the driver: a batch can hold a thousand groups, and SQLAlchemy's
        # per-row parameter work cost more than SQLite's upsert.
        driver_cursor(session).executemany(_UPSERT_SQL["sqlite"][table], rows)
        return
    keys, sums = TABLES[table]
    columns = (*keys, *sums)
    session.execute(
        text(_UPSERT_SQL["postgresql"][table]),
        [dict(zip(columns, row, strict=True)) for row in rows],
    )


def _add_into(target: dict[tuple, list[int]], key: tuple, values: Sequence[int]) -> None:
    found = target.get(key)
    if found is None:
        target[key] = list(values)
    else:
        for i, v in enumerate(values):
            found[i] += v


def grains(delta: Delta) -> dict[str, dict[tuple, list[int]]]:
    """The delta at every grain: table → {key tuple (in TABLES order): summed values}."""
    out: dict[str, dict[tuple, list[int]]] = {name: {} for name in TABLES}
    hours, days, totals = out["run_rollups"], out["run_rollup_days"], out["run_rollup_totals"]
    for (agent, status, hour), values in delta.groups.items():
        if any(values):
            hours[(hour, agent, status)] = values
            _add_into(days, (hour.replace(hour=0), agent, status), values)
            _add_into(totals, (agent, status), values)
    hour_buckets, day_buckets = out["run_rollup_durations"], out["run_rollup_day_durations"]
    total_buckets = out["run_rollup_total_durations"]
    for (agent, status, hour, bucket), n in delta.buckets.items():
        if n:
            hour_buckets[(hour, agent, status, bucket)] = [n]
            _add_into(day_buckets, (hour.replace(hour=0), agent, bucket), [n])
            _add_into(total_buckets, (agent, bucket), [n])
    facet_hours, facet_totals = out["run_facet_rollups"], out["run_facet_totals"]
    for (facet, value, status, hour), n in delta.facets.items():
        if n:
            facet_hours[(hour, facet, value, status)] = [n]
            _add_into(facet_totals, (facet, value, status), [n])
    return {table: {k: v for k, v in groups.items() if any(v)} for table, groups in out.items()}


def upsert_rows(delta: Delta, dialect: str) -> dict[str, list[tuple]]:
    """The upserts a delta makes, per table, as parameter tuples in TABLES column order.

    Pure: ingest computes them before its write transaction, so that this work does
    not hold the write lock.
    """
    out: dict[str, list[tuple]] = {}
    periods: dict[datetime, Any] = {}
    for table, groups in grains(delta).items():
        keys, _ = TABLES[table]
        timed = keys[0] in ("hour", "day")
        rows = []
        for key, values in groups.items():
            if timed:
                when = periods.get(key[0])
                if when is None:
                    when = periods[key[0]] = _period(key[0], dialect)
                key = (when, *key[1:])
            rows.append((*key, *values))
        out[table] = rows
    return out


def apply_delta(session: Session, delta: Delta, rows: Optional[Mapping[str, list[tuple]]] = None) -> None:
    """Write an aggregated delta: one upsert per group, at each grain (hour, day, all time).

    `rows`: `upsert_rows(delta, ...)` when already computed.
    """
    dialect = session.get_bind().dialect.name
    for table, params in (rows if rows is not None else upsert_rows(delta, dialect)).items():
        _upsert(session, table, params)
    counters.add(session, delta.counters)
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
