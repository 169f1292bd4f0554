"""POST /api/v1/ingest: spool lines v1 applied in one transaction, idempotent per line.

Every line carries its run's five required fields, so any line can create its run.
Lines are applied per run in the order of their own timestamps (`ts`), and what a
late line may still change follows the stale rules of console/stale.py: a
`run_started` never resets a run that already ended; an end arriving before its
start still ends the run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

from pydantic import BaseModel, ValidationError, field_validator
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from . import rollups
from .models import COUNTERS, ingested_lines, run_events
from .runstore import RUN_COLUMNS, dialect_insert, driver_rows, load_runs, lock_runs, write_runs
from .stale import TERMINAL, may_end, sign_of_life
from .timeutil import format_utc, utcnow
from .validation import (
    CommitAssociation,
    EventId,
    Identifier,
    JSONValue,
    RunFields,
    Status,
    Timestamp,
    error_details,
)

SPOOL_VERSION = 1
KINDS = ("run_started", "run_updated", "run_ended", "event", "commit", "heartbeat")
RUN_KINDS = ("run_started", "run_updated", "run_ended")
# Applied in this order when two lines of one run carry the same timestamp.
_KIND_ORDER = {"run_started": 0, "run_updated": 1, "heartbeat": 2, "event": 2, "commit": 3, "run_ended": 4}
_ZERO_DEFAULTS = {**dict.fromkeys(COUNTERS, 0), "duration_ms": 0, "api_posted": 0, "api_retry_count": 0}


class SpoolLine(BaseModel):
    """The envelope of one spool line (its `data` is checked per kind)."""

    v: int
    id: Identifier
    kind: str
    ts: Timestamp
    event_id: EventId
    run_id: Identifier
    agent_name: Identifier
    job_type: Identifier
    start_time: Timestamp
    data: Optional[dict[str, Any]] = None

    @field_validator("v")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > SPOOL_VERSION or value < 1:
            raise ValueError(f"spool line version {value} is not supported (this console reads v{SPOOL_VERSION})")
        return value

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"unknown kind {value[:40]!r}; expected one of {', '.join(KINDS)}")
        return value


class RunData(RunFields):
    """`data` of run_started / run_updated / run_ended."""

    status: Optional[Status] = None
    created_at: Optional[Timestamp] = None


class EventData(BaseModel):
    """`data` of an event line."""

    event_type: Identifier
    payload: JSONValue = None


class HeartbeatData(BaseModel):
    """`data` of a heartbeat line: nothing."""


_DATA_MODELS = {
    "run_started": RunData,
    "run_updated": RunData,
    "run_ended": RunData,
    "event": EventData,
    "commit": CommitAssociation,
    "heartbeat": HeartbeatData,
}


@dataclass
class Line:
    index: int
    envelope: SpoolLine
    data: BaseModel


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def parse_lines(document: Sequence[Any]) -> tuple[list[Line], list[dict[str, Any]]]:
    """Validate every line; returns (good lines, rejections). Never raises for a line."""
    good: list[Line] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(document):
        line_id = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
        if not isinstance(item, dict):
            rejected.append({"index": index, "id": None, "detail": "a spool line must be a JSON object"})
            continue
        try:
            envelope = SpoolLine.model_validate(item)
            data = _DATA_MODELS[envelope.kind].model_validate(envelope.data or {})
        except ValidationError as exc:
            rejected.append({"index": index, "id": line_id, "detail": error_details(exc, prefix=())})
            continue
        good.append(Line(index, envelope, data))
    return good, rejected


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
    insert_params: dict[str, tuple]  # SQLite: each row as the driver takes it


def prepare(
    parsed: tuple[list[Line], list[dict[str, Any]]], *, dialect: str, now: Optional[datetime] = None
) -> Prepared:
    """Fold a parsed batch per run, assuming new runs and new lines."""
    now = now or utcnow()
    lines, rejected = parsed
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
        run_lines.sort(key=lambda item: (item.envelope.ts, _KIND_ORDER[item.envelope.kind]))
        row = new_row(run_lines[0].envelope, now)
        run_events_: list[dict[str, Any]] = []
        for line in run_lines:
            apply_line(row, line, run_events_, now)
        rows[event_id] = row
        events[event_id] = run_events_
        delta.add(row, +1)
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
        params,
    )


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
    """
    if prepared is None:
        if parsed is None:
            parsed = parse_lines(document or [])
        prepared = prepare(parsed, dialect=session.get_bind().dialect.name, now=now)
    result = IngestResult(rejected=list(prepared.rejected))
    with rollups.own_writes(session):
        claimed, duplicates = _claim(session, prepared.lines, prepared.now)
        result.duplicates = duplicates + prepared.in_batch_duplicates
        result.accepted = len(claimed)
        if claimed:
            _apply(session, prepared, claimed)
        _count(session, result)
    return result


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
        # SQLite: this transaction holds the write lock, so read-then-insert cannot race.
        seen: set[str] = set()
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            seen.update(session.execute(select(ingested_lines.c.id).where(ingested_lines.c.id.in_(chunk))).scalars())
        new_ids = [i for i in ids if i not in seen]
        if new_ids:
            stamp = format_utc(now)
            session.execute(
                text("INSERT INTO ingested_lines (id, received_at) VALUES (:id, :at)"),
                [{"id": i, "at": stamp} for i in new_ids],
            )
        claimed.update(new_ids)
    return claimed, len(ids) - len(claimed)


def new_row(envelope: SpoolLine, now: datetime) -> dict[str, Any]:
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
    runs = [e for e, run_lines in prepared.by_run.items() if any(line.envelope.id in claimed for line in run_lines)]
    lock_runs(session, sorted(runs))
    stored = load_runs(session, runs)
    inserts: list[dict[str, Any]] = []
    updates: list[tuple[dict[str, Any], dict[str, Any]]] = []
    events: list[dict[str, Any]] = []
    for event_id, run_lines in prepared.by_run.items():
        fresh_lines = [line for line in run_lines if line.envelope.id in claimed]
        old = stored.get(event_id)
        if old is None and len(fresh_lines) == len(run_lines):
            # Folded in advance, as it is.
            inserts.append(prepared.insert_params.get(event_id) or prepared.rows[event_id])
            events += prepared.events[event_id]
            continue
        delta.add(prepared.rows[event_id], -1)  # not as prepared: fold again
        if not fresh_lines:
            continue
        row = dict(old) if old is not None else new_row(fresh_lines[0].envelope, now)
        for line in fresh_lines:
            apply_line(row, line, events, now)
        if old is None:
            inserts.append(row)
            delta.add(row, +1)
        elif row != old:
            row["updated_at"] = now
            updates.append((old, row))
            delta.add(old, -1)
            delta.add(row, +1)
    write_runs(session, inserts, updates, delta=delta)
    if events:
        session.execute(dialect_insert(session, run_events).on_conflict_do_nothing(index_elements=["uid"]), events)


def apply_line(row: dict[str, Any], line: Line, events: list[dict[str, Any]], now: datetime) -> None:
    """Fold one line into the run's row (and collect its event)."""
    envelope, data, kind, ts = line.envelope, line.data, line.envelope.kind, line.envelope.ts
    if kind == "run_started":
        _set_fields(row, data, fill_only=True)
        row["last_seen_at"] = max(row["last_seen_at"] or row["start_time"], row["start_time"])
    elif kind in ("run_updated", "run_ended"):
        status = data.status if "status" in data.model_fields_set else None
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
                "event_type": data.event_type,
                "timestamp": ts,
                "payload_json": data.payload,
                "uid": envelope.id,
                "created_at": now,
            }
        )
    elif kind == "commit":
        row["git_commit_hash"] = data.commit_hash
        row["git_commit_source"] = data.commit_source
        if data.commit_author is not None:
            row["git_commit_author"] = data.commit_author
        if data.commit_timestamp is not None:
            row["git_commit_timestamp"] = data.commit_timestamp


def _end(row: dict[str, Any], data: RunData, status: str, ts: datetime) -> None:
    if not may_end(row, ts):
        _set_fields(row, data, fill_only=True)
        return
    _set_fields(row, data, fill_only=False)
    row["status"] = status
    row["end_time"] = data.end_time or ts
    row["stale_marked_at"] = row["stale_marked_by"] = None
    if "duration_ms" not in data.model_fields_set and not row["duration_ms"] and row["end_time"]:
        row["duration_ms"] = max(0, int((row["end_time"] - row["start_time"]).total_seconds() * 1000))


def _set_fields(row: dict[str, Any], data: BaseModel, *, fill_only: bool) -> None:
    for name in data.model_fields_set:
        if name == "status" or name not in row:
            continue
        value = getattr(data, name)
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
