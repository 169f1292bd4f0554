"""Silent and stale runs: who may change a run's status after a stale verdict.

A run is silent since `last_seen_at`: the latest of its start_time, its last
heartbeat and its last event (and progress update), by the records' own
timestamps. A stale verdict sets `stale_marked_at` / `stale_marked_by` (sweep,
operator, api). News timestamped after the verdict overrides it: an end record
sets the final status; a heartbeat or an event reopens the run only when the sweep
made the verdict. News timestamped earlier never changes the status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Optional

from sqlalchemy import ColumnElement, and_, func, insert, literal_column, or_, select, update
from sqlalchemy.orm import Session

from console.core.timeutil import utcnow
from console.store import alert_marker, rollups
from console.store.models import agent_runs, audit_log

VERDICT_MAKERS = ("sweep", "operator", "api")
TERMINAL = ("success", "failure", "partial", "timeout", "cancelled")
STALE_PREFIX = "Marked failed"


def later(a: Optional[datetime], b: Optional[datetime]) -> Optional[datetime]:
    """The later of two optional times."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b


def sign_of_life(row: Mapping[str, Any], ts: datetime, *, heartbeat: bool = False) -> dict[str, Any]:
    """The column changes a heartbeat or event timestamped `ts` makes to `row`."""
    changes: dict[str, Any] = {}
    seen = later(row.get("last_seen_at") or row.get("start_time"), ts)
    if seen != row.get("last_seen_at"):
        changes["last_seen_at"] = seen
    if heartbeat:
        beat = later(row.get("last_heartbeat_at"), ts)
        if beat != row.get("last_heartbeat_at"):
            changes["last_heartbeat_at"] = beat
    marked_at = row.get("stale_marked_at")
    if row.get("stale_marked_by") == "sweep" and marked_at is not None and ts > marked_at:
        if row.get("status") != "running":
            changes.update(status="running", end_time=None, reopened=1)
            if (row.get("error_summary") or "").startswith(STALE_PREFIX):
                changes["error_summary"] = None
        changes.update(stale_marked_at=None, stale_marked_by=None)
    return changes


def may_end(row: Mapping[str, Any], ts: datetime) -> bool:
    """True when an end record timestamped `ts` may set the final status of `row`."""
    marked_at = row.get("stale_marked_at")
    if marked_at is not None:
        return ts > marked_at
    if row.get("status") == "running":
        return True
    end_time = row.get("end_time")
    return end_time is None or ts >= end_time


def silent_seconds(row: Mapping[str, Any], now: datetime) -> float:
    """How long the run has said nothing, by its records' own timestamps."""
    since = row.get("last_seen_at") or row.get("start_time")
    return max(0.0, round((now - since).total_seconds(), 3))


def silent_since(cutoff: datetime) -> ColumnElement[bool]:
    """Running runs with no sign of life since `cutoff`.

    `status` is compared with a literal: a bound parameter would keep SQLite from
    using the partial index of running runs.
    """
    c = agent_runs.c
    return and_(
        c.status == literal_column("'running'"),
        or_(c.last_seen_at < cutoff, and_(c.last_seen_at.is_(None), c.start_time < cutoff)),
    )


def list_stale(
    session: Session,
    older_than_minutes: int,
    *,
    now: Optional[datetime] = None,
    limit: int = 1000,
    offset: int = 0,
    event_ids: Optional[Sequence[str]] = None,
) -> list[Mapping[str, Any]]:
    """Running runs silent longer than `older_than_minutes`, oldest first, from the `offset`-th;
    of every run, or of `event_ids`."""
    now = now or utcnow()
    cutoff = now - timedelta(minutes=older_than_minutes)
    c = agent_runs.c
    query = select(agent_runs).where(silent_since(cutoff))
    if event_ids is not None:
        query = query.where(c.event_id.in_(list(event_ids)))
    query = query.order_by(c.last_seen_at, c.id).limit(limit).offset(offset)
    rows = [dict(r) for r in session.execute(query).mappings()]
    rows.sort(key=lambda r: (r["last_seen_at"] or r["start_time"], r["id"]))
    return rows


def count_stale(session: Session, older_than_minutes: int, *, now: datetime, cap: int) -> int:
    """How many running runs are silent longer than `older_than_minutes`, counted up to `cap` + 1
    (the partial index of running runs, read no further than that)."""
    cutoff = now - timedelta(minutes=older_than_minutes)
    found = select(agent_runs.c.id).where(silent_since(cutoff)).limit(cap + 1).subquery()
    return session.execute(select(func.count()).select_from(found)).scalar_one()


def verdict_maker(actor: str) -> str:
    """`operator:alice` → `operator`; the column holds one of VERDICT_MAKERS."""
    kind = actor.split(":", 1)[0]
    return kind if kind in VERDICT_MAKERS else "api"


def mark_stale_runs_failed(
    session: Session,
    *,
    event_ids: Optional[Sequence[str]] = None,
    older_than_minutes: Optional[int] = None,
    reason: Optional[str] = None,
    actor: str = "api",
    now: Optional[datetime] = None,
) -> tuple[list[str], list[str]]:
    """Mark still-running runs failed; returns (changed event_ids, skipped event_ids).

    Give `event_ids` (operator's choice) or `older_than_minutes` (the stale list).
    Only runs still `running` change; the others are skipped. Each change is
    written to the audit log.
    """
    now = now or utcnow()
    if event_ids is not None:
        wanted = list(dict.fromkeys(event_ids))
        rows = []
        for chunk in _chunks(wanted, 500):
            rows += [
                dict(r) for r in session.execute(select(agent_runs).where(agent_runs.c.event_id.in_(chunk))).mappings()
            ]
        why = reason or "marked failed by request"
    else:
        minutes = older_than_minutes if older_than_minutes is not None else 60
        rows = list_stale(session, minutes, now=now, limit=100_000)
        wanted = [r["event_id"] for r in rows]
        why = reason or f"no report for more than {minutes} minutes"
    maker = verdict_maker(actor)
    summary = f"{STALE_PREFIX} by {actor}: {why}"[:4000]
    changed: list[str] = []
    pairs = []
    with rollups.own_writes(session):
        for row in rows:
            if row["status"] != "running":
                continue
            new = {
                "status": "failure",
                "error_summary": summary,
                "stale_marked_at": now,
                "stale_marked_by": maker,
                "updated_at": now,
                "end_time": row["end_time"] or now,
            }
            result = session.execute(
                update(agent_runs).where(agent_runs.c.id == row["id"], agent_runs.c.status == "running").values(**new)
            )
            if result.rowcount:
                changed.append(row["event_id"])
                pairs.append((row, {**row, **new}))
        rollups.record_changes(session, pairs)
    if changed:
        alert_marker.bump(session)
        session.execute(
            insert(audit_log),
            [
                {"at": now, "actor": actor, "action": "mark_failed", "event_id": e, "detail": why[:4000]}
                for e in changed
            ],
        )
    done = set(changed)
    skipped = [e for e in wanted if e not in done]
    return changed, skipped


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
