"""POST /api/v1/ingest: spool lines v1 applied in one transaction, idempotent per line.

Every line carries its run's five required fields, so any line can create its run.
Lines are applied per run in the order of their own timestamps (`ts`), and what a
late line may still change follows the stale rules of console/domain/stale.py: a
`run_started` never resets a run that already ended; an end arriving before its
start still ends the run. The lines are read and validated in console/domain/spool_lines.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, InternalError, OperationalError
from sqlalchemy.orm import Session

from console.core.timeutil import format_utc, utcnow
from console.domain.spool_lines import Envelope, Line, parse_lines
from console.domain.stale import TERMINAL, may_end, sign_of_life
from console.store import alert_marker, rollups
from console.store.models import COUNTERS, run_events
from console.store.runstore import (
    RUN_COLUMNS,
    dialect_insert,
    driver_rows,
    insert_sqlite_rows,
    load_runs,
    lock_runs,
    write_runs,
)

log = logging.getLogger("console.ingest")

# Applied in this order when two lines of one run carry the same timestamp.
_KIND_ORDER = {"run_started": 0, "run_updated": 1, "heartbeat": 2, "event": 2, "commit": 3, "run_ended": 4}
_ZERO_DEFAULTS = {**dict.fromkeys(COUNTERS, 0), "duration_ms": 0, "api_posted": 0, "api_retry_count": 0}


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


@dataclass
class Prepared:
    """A validated batch, folded in advance as if every run were new (the common case).

    Built before the write transaction, so that two workers' Python work overlaps
    and only the database work holds the write lock. Runs that turn out to exist,
    or whose lines were partly seen before, are folded again inside the transaction.
    """

    now: datetime
    dialect: str
    lines: list[Line]
    rejected: list[dict[str, Any]]
    in_batch_duplicates: int
    by_run: dict[str, list[Line]]
    rows: dict[str, dict[str, Any]]
    events: dict[str, list[dict[str, Any]]]
    delta: rollups.Delta
    rollup_rows: dict[str, list[tuple]]  # rollups.upsert_rows(delta)
    insert_params: dict[str, tuple]  # SQLite: each row as the driver takes it


def prepare(
    parsed: tuple[list[Line], list[dict[str, Any]]], *, dialect: str, now: Optional[datetime] = None
) -> Prepared:
    """Fold a parsed batch per run, assuming new runs and new lines.

    A line that cannot be folded (an unexpected error) is rejected; the others are kept.
    """
    now = now or utcnow()
    lines, rejected = parsed
    try:
        return _fold(lines, rejected, dialect, now)
    except Exception:  # noqa: BLE001 - find the line at fault below
        log.exception("ingest: a batch of %d lines could not be prepared; preparing them one by one", len(lines))
    good: list[Line] = []
    rejected = list(rejected)
    for line in lines:
        try:
            _fold([line], [], dialect, now)
        except Exception:  # noqa: BLE001 - that line's fault only
            rejected.append(_rejection(line, "the console could not prepare this line"))
        else:
            good.append(line)
    return _fold(good, rejected, dialect, now)


def _fold(lines: list[Line], rejected: list[dict[str, Any]], dialect: str, now: datetime) -> Prepared:
    first: dict[str, Line] = {}
    for line in lines:
        first.setdefault(line.envelope.id, line)
    by_run: dict[str, list[Line]] = defaultdict(list)
    for line in first.values():
        by_run[line.envelope.event_id].append(line)
    rows: dict[str, dict[str, Any]] = {}
    events: dict[str, list[dict[str, Any]]] = {}
    delta = rollups.Delta()
    for event_id, run_lines in by_run.items():
        run_lines.sort(key=_in_order)
        row = new_row(run_lines[0].envelope, now)
        run_events_: list[dict[str, Any]] = []
        for line in run_lines:
            apply_line(row, line, run_events_, now)
        rows[event_id] = row
        events[event_id] = run_events_
        delta.add(row, +1)
        delta.count(None, row)
    params = dict(zip(rows, driver_rows(list(rows.values())), strict=True)) if dialect == "sqlite" else {}
    return Prepared(
        now,
        dialect,
        list(first.values()),
        list(rejected),
        len(lines) - len(first),
        dict(by_run),
        rows,
        events,
        delta,
        rollups.upsert_rows(delta, dialect),
        params,
    )


def _in_order(line: Line) -> tuple[datetime, int]:
    return line.envelope.ts, _KIND_ORDER[line.envelope.kind]


def _rejection(line: Line, detail: str) -> dict[str, Any]:
    return {"index": line.index, "id": line.envelope.id, "detail": detail}


def ingest(
    session: Session,
    document: Optional[Sequence[Any]] = None,
    *,
    parsed: Optional[tuple[list[Line], list[dict[str, Any]]]] = None,
    prepared: Optional[Prepared] = None,
    now: Optional[datetime] = None,
) -> IngestResult:
    """Apply a batch of spool lines in the session's transaction.

    The API passes `prepared=prepare(parse_lines(document), ...)`, made before the
    transaction starts: validation and folding need not hold the write lock.

    The batch is applied under a savepoint. When the database refuses it for
    something one line holds (a value, a constraint), it is applied again line by
    line, each under its own savepoint: the line the database refuses is rejected
    and the others are applied. A fault of the database itself (unreachable, locked,
    full, read-only) is raised: the whole request fails, to be retried.
    """
    if prepared is None:
        if parsed is None:
            parsed = parse_lines(document or [])
        prepared = prepare(parsed, dialect=session.get_bind().dialect.name, now=now)
    result = IngestResult(rejected=list(prepared.rejected), duplicates=prepared.in_batch_duplicates)
    try:
        with _savepoint(session):
            accepted, duplicates = _apply_batch(session, prepared)
    except Exception as exc:
        if not _refused_for_a_line(exc):
            raise
        log.warning("ingest: the database refused a batch of %d lines (%s); applying them one by one",
                    len(prepared.lines), _reason(exc))
        accepted, duplicates = _apply_one_by_one(session, prepared, result.rejected)
    result.accepted += accepted
    result.duplicates += duplicates
    result.rejected.sort(key=lambda item: item["index"])
    _count(session, result)
    return result


@contextlib.contextmanager
def _savepoint(session: Session) -> Iterator[None]:
    with session.begin_nested():
        session.connection()  # SAVEPOINT now: the lean paths write through the driver's cursor
        yield


def _apply_batch(session: Session, prepared: Prepared) -> tuple[int, int]:
    """Claim and apply the prepared lines; returns (accepted, duplicates)."""
    with rollups.own_writes(session):
        claimed, duplicates = _claim(session, prepared.lines, prepared.now)
        if claimed:
            _apply(session, prepared, claimed)
    return len(claimed), duplicates


def _apply_one_by_one(session: Session, prepared: Prepared, rejected: list[dict[str, Any]]) -> tuple[int, int]:
    """Each line under its own savepoint, in the order of their timestamps; a refused one is rejected."""
    accepted = duplicates = 0
    for line in sorted(prepared.lines, key=_in_order):
        try:
            alone = _fold([line], [], prepared.dialect, prepared.now)
            with _savepoint(session):
                one_accepted, one_duplicate = _apply_batch(session, alone)
        except Exception as exc:
            if not _refused_for_a_line(exc):
                raise
            rejected.append(_rejection(line, f"the database refused this line: {_reason(exc)}"))
            continue
        accepted += one_accepted
        duplicates += one_duplicate
    return accepted, duplicates


def _refused_for_a_line(exc: BaseException) -> bool:
    """False for a fault of the database or the connection, which no line causes or cures."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return False
        if isinstance(exc, (OperationalError, InterfaceError, InternalError)):
            return False
        exc = exc.orig
    return not isinstance(exc, (sqlite3.OperationalError, sqlite3.InterfaceError, sqlite3.InternalError))


def _reason(exc: BaseException) -> str:
    """What the database said, in one short line: never the statement or its parameters."""
    orig = getattr(exc, "orig", None) or exc
    words = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {words[0][:200] if words else 'no message'}"


def _claim(session: Session, lines: list[Line], now: datetime) -> tuple[set[str], int]:
    """Record the line ids (unique within `lines`) not seen before; returns (claimed ids, duplicates)."""
    if not lines:
        return set(), 0
    ids = [line.envelope.id for line in lines]
    claimed: set[str] = set()
    if session.get_bind().dialect.name == "postgresql":
        # Concurrent claims of one id: the second waits for the first and gets nothing.
        claimed.update(
            session.execute(
                text(
                    "INSERT INTO ingested_lines (id, received_at) SELECT i, :now FROM unnest(CAST(:ids AS text[])) AS i "
                    "ON CONFLICT DO NOTHING RETURNING id"
                ),
                {"ids": sorted(ids), "now": now},  # one order for every writer: no deadlock
            ).scalars()
        )
    else:
        # One statement, the ids as one JSON parameter: DO NOTHING skips the ids seen before.
        claimed.update(
            session.connection()
            .exec_driver_sql(
                "INSERT INTO ingested_lines (id, received_at) SELECT value, ? FROM json_each(?) WHERE true "
                "ON CONFLICT (id) DO NOTHING RETURNING id",
                (format_utc(now), json.dumps(ids)),
            )
            .scalars()
        )
    return claimed, len(ids) - len(claimed)


def new_row(envelope: Envelope, now: datetime) -> dict[str, Any]:
    """A run created from any line's head fields, before that line is applied."""
    row = dict.fromkeys(RUN_COLUMNS)
    row.update(_ZERO_DEFAULTS)
    row.update(
        event_id=envelope.event_id,
        run_id=envelope.run_id,
        agent_name=envelope.agent_name,
        job_type=envelope.job_type,
        start_time=envelope.start_time,
        status="running",
        schema_version=7,
        created_at=now,
        updated_at=now,
        last_seen_at=envelope.start_time,
    )
    return row


def _apply(session: Session, prepared: Prepared, claimed: set[str]) -> None:
    now, delta = prepared.now, prepared.delta.copy()  # db.write may retry: never change `prepared`
    as_prepared = True
    all_fresh = len(claimed) == len(prepared.lines)
    runs = [e for e, lines in prepared.by_run.items() if all_fresh or any(x.envelope.id in claimed for x in lines)]
    # SQLite: insert the runs whose lines are all new as folded in advance; only those
    # that exist already are read and folded again (no lookup for the common case).
    inserted = _insert_new(session, prepared, runs, claimed, all_fresh) if prepared.dialect == "sqlite" else set()
    rest = [e for e in runs if e not in inserted] if inserted else runs
    lock_runs(session, sorted(rest))
    stored = load_runs(session, rest) if rest else {}
    inserts: list[dict[str, Any]] = []
    updates: list[tuple[dict[str, Any], dict[str, Any]]] = []
    events: list[dict[str, Any]] = []
    for event_id in inserted:
        events += prepared.events[event_id]
    for event_id in rest:
        run_lines = prepared.by_run[event_id]
        fresh_lines = run_lines if all_fresh else [line for line in run_lines if line.envelope.id in claimed]
        old = stored.get(event_id)
        if old is None and len(fresh_lines) == len(run_lines):
            # Folded in advance, as it is (PostgreSQL; on SQLite _insert_new inserted these).
            inserts.append(prepared.rows[event_id])
            events += prepared.events[event_id]
            continue
        delta.add(prepared.rows[event_id], -1)  # not as prepared: fold again
        delta.count(None, prepared.rows[event_id], -1)
        as_prepared = False
        row = dict(old) if old is not None else new_row(fresh_lines[0].envelope, now)
        for line in fresh_lines:
            apply_line(row, line, events, now)
        if old is None:
            inserts.append(row)
            delta.add(row, +1)
            delta.count(None, row)
        elif row != old:
            row["updated_at"] = now
            updates.append((old, row))
            delta.add(old, -1)
            delta.add(row, +1)
            delta.count(old, row)
    if len(runs) != len(prepared.rows):  # runs without a fresh line change nothing
        as_prepared = False
        for event_id in prepared.rows.keys() - set(runs):
            delta.add(prepared.rows[event_id], -1)
            delta.count(None, prepared.rows[event_id], -1)
    write_runs(session, inserts, updates, delta=delta, rollup_rows=prepared.rollup_rows if as_prepared else None)
    ended_badly = [prepared.rows[e]["status"] for e in inserted] + [row["status"] for row in inserts]
    ended_badly += [new["status"] for old, new in updates if new["status"] != old["status"]]
    if alert_marker.any_failing(ended_badly):
        alert_marker.bump(session)
    if events:
        session.execute(dialect_insert(session, run_events).on_conflict_do_nothing(index_elements=["uid"]), events)


def _insert_new(
    session: Session, prepared: Prepared, runs: list[str], claimed: set[str], all_fresh: bool
) -> set[str]:
    """Insert (SQLite) the prepared rows of the runs whose lines are all fresh; returns those inserted."""
    if all_fresh:
        candidates = runs
    else:
        candidates = [e for e in runs if all(line.envelope.id in claimed for line in prepared.by_run[e])]
    if not candidates:
        return set()
    returned = insert_sqlite_rows(
        session,
        RUN_COLUMNS,
        [prepared.insert_params[e] for e in candidates],
        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
    )
    return {event_id for (event_id,) in returned}


def apply_line(row: dict[str, Any], line: Line, events: list[dict[str, Any]], now: datetime) -> None:
    """Fold one line into the run's row (and collect its event)."""
    envelope, data, kind, ts = line.envelope, line.data, line.envelope.kind, line.envelope.ts
    if kind == "run_started":
        _set_fields(row, data, fill_only=True)
        row["last_seen_at"] = max(row["last_seen_at"] or row["start_time"], row["start_time"])
    elif kind in ("run_updated", "run_ended"):
        status = data.get("status")
        if kind == "run_ended" or status in TERMINAL:
            _end(row, data, status if status in TERMINAL else "success", ts)
        else:
            row.update(sign_of_life(row, ts))
            _set_fields(row, data, fill_only=row["status"] != "running")
    elif kind == "heartbeat":
        row.update(sign_of_life(row, ts, heartbeat=True))
    elif kind == "event":
        row.update(sign_of_life(row, ts))
        events.append(
            {
                "event_id": envelope.event_id,
                "run_id": row["run_id"],
                "event_type": data["event_type"],
                "timestamp": ts,
                "payload_json": data.get("payload"),
                "uid": envelope.id,
                "created_at": now,
            }
        )
    elif kind == "commit":
        row["git_commit_hash"] = data["commit_hash"]
        row["git_commit_source"] = data["commit_source"]
        if data.get("commit_author") is not None:
            row["git_commit_author"] = data["commit_author"]
        if data.get("commit_timestamp") is not None:
            row["git_commit_timestamp"] = data["commit_timestamp"]


def _end(row: dict[str, Any], data: dict[str, Any], status: str, ts: datetime) -> None:
    if not may_end(row, ts):
        _set_fields(row, data, fill_only=True)
        return
    _set_fields(row, data, fill_only=False)
    row["status"] = status
    row["end_time"] = data.get("end_time") or ts
    row["stale_marked_at"] = row["stale_marked_by"] = None
    if "duration_ms" not in data and not row["duration_ms"] and row["end_time"]:
        row["duration_ms"] = max(0, int((row["end_time"] - row["start_time"]).total_seconds() * 1000))


def _set_fields(row: dict[str, Any], data: dict[str, Any], *, fill_only: bool) -> None:
    for name, value in data.items():
        if name == "status" or name not in row:
            continue
        if name == "api_posted":
            value = 1 if value else 0
        if value is None:
            continue
        if fill_only and row[name] not in (None, "", 0):
            continue
        row[name] = value


def _count(session: Session, result: IngestResult) -> None:
    """Add the batch's outcomes to ingest_counts (what /metrics reports)."""
    counts = {"accepted": result.accepted, "duplicate": result.duplicates, "rejected": len(result.rejected)}
    params = [{"outcome": k, "n": v} for k, v in counts.items() if v]
    if params:
        session.execute(
            text(
                "INSERT INTO ingest_counts (outcome, records) VALUES (:outcome, :n) "
                "ON CONFLICT (outcome) DO UPDATE SET records = ingest_counts.records + excluded.records"
            ),
            params,
        )
