"""A run's timeline (run_events) and its heartbeats: plain functions over a session."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Optional

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from console.core.timeutil import format_utc, parse_timestamp, utcnow
from console.domain.stale import sign_of_life
from console.store import rollups
from console.store.models import agent_runs, run_events
from console.store.runstore import dialect_insert, load_runs, lock_runs


class RunNotFound(LookupError):
    """No run has this event_id."""


class BadCursor(ValueError):
    """A cursor this console did not hand out."""


def encode_cursor(timestamp: datetime, row_id: int) -> str:
    raw = json.dumps([format_utc(timestamp), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, row_id = json.loads(raw)
        return parse_timestamp(stamp), int(row_id)
    except (ValueError, TypeError) as exc:
        raise BadCursor("cursor is not valid; use the Link header of the previous page") from exc


def run_exists(session: Session, event_id: str) -> bool:
    return session.execute(select(agent_runs.c.id).where(agent_runs.c.event_id == event_id)).first() is not None


def list_events(
    session: Session, event_id: str, *, limit: int = 100, cursor: Optional[str] = None
) -> tuple[list[dict[str, Any]], Optional[str]]:
    """The run's events, oldest first, and the cursor of the next page (or None)."""
    if not run_exists(session, event_id):
        raise RunNotFound(event_id)
    e = run_events.c
    query = select(e.id, e.event_type, e.timestamp, e.payload_json).where(e.event_id == event_id)
    if cursor:
        stamp, row_id = decode_cursor(cursor)
        # A range on the index first; the OR only settles ties (see runs.list_runs).
        query = query.where(and_(e.timestamp >= stamp, or_(e.timestamp > stamp, e.id > row_id)))
    rows = session.execute(query.order_by(e.timestamp, e.id).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        {"id": r.id, "event_type": r.event_type, "timestamp": format_utc(r.timestamp), "payload": r.payload_json}
        for r in rows
    ]
    next_cursor = encode_cursor(rows[-1].timestamp, rows[-1].id) if more else None
    return items, next_cursor


def _locked_run(session: Session, event_id: str) -> dict[str, Any]:
    lock_runs(session, [event_id])
    row = load_runs(session, [event_id]).get(event_id)
    if row is None:
        raise RunNotFound(event_id)
    return row


def _save_life(session: Session, row: Mapping[str, Any], changes: dict[str, Any], now: datetime) -> None:
    if not changes:
        return
    changes["updated_at"] = now
    with rollups.own_writes(session):
        session.execute(update(agent_runs).where(agent_runs.c.id == row["id"]).values(**changes))
        rollups.record_changes(session, [(row, {**row, **changes})])


def add_events(
    session: Session, event_id: str, items: Sequence[Mapping[str, Any]], *, now: Optional[datetime] = None
) -> tuple[int, int]:
    """Store events (`event_type`, `timestamp`, `payload`, optional `id`); (inserted, duplicates)."""
    now = now or utcnow()
    row = _locked_run(session, event_id)
    values = []
    seen: set[str] = set()
    for item in items:
        uid = item.get("id")
        if uid is not None:
            if uid in seen:
                continue
            seen.add(uid)
        values.append(
            {
                "event_id": event_id,
                "run_id": row["run_id"],
                "event_type": item["event_type"],
                "timestamp": item.get("timestamp") or now,
                "payload_json": item.get("payload"),
                "uid": uid,
                "created_at": now,
            }
        )
    inserted = 0
    for start in range(0, len(values), 1000):
        statement = (
            dialect_insert(session, run_events)
            .values(values[start : start + 1000])
            .on_conflict_do_nothing(index_elements=["uid"])
            .returning(run_events.c.id)
        )
        inserted += len(session.execute(statement).all())
    if values:
        _save_life(session, row, sign_of_life(row, max(v["timestamp"] for v in values)), now)
    return inserted, len(items) - inserted


def record_heartbeat(
    session: Session, event_id: str, timestamp: Optional[datetime] = None, *, now: Optional[datetime] = None
) -> datetime:
    """Note that the run is alive at `timestamp` (default now); returns its last heartbeat."""
    now = now or utcnow()
    row = _locked_run(session, event_id)
    changes = sign_of_life(row, timestamp or now, heartbeat=True)
    _save_life(session, row, changes, now)
    return changes.get("last_heartbeat_at") or row["last_heartbeat_at"]
