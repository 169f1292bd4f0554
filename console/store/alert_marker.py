"""The alerts' change marker: one row whose counter every write that ends a run badly bumps.

The scheduler's leader reads the counter about once a second (console/alerts/loop.py)
and evaluates the rules when it moved, so a failure reaches its channels within
seconds, whichever worker or host stored it. The bump joins the writer's own
transaction: one UPDATE per transaction (per group of single POSTs), and none
for writes that end no run as `failure` or `timeout`.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Column, Integer, Table, Text, select, text
from sqlalchemy.orm import Session

from console.store.models import metadata
from console.store.types import UTCDateTime

FAILING = ("failure", "timeout")

alert_state = Table(
    "alert_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("changes", Integer, nullable=False, server_default="0"),
    Column("last_evaluated_at", UTCDateTime),
    Column("evaluated_by", Text),
    Column("evaluated_from", UTCDateTime),
)

# An upsert: the row is there after migration 0015, and comes back if someone emptied the table.
BUMP_SQL = ("INSERT INTO alert_state (id, changes) VALUES (1, 1) "
            "ON CONFLICT (id) DO UPDATE SET changes = alert_state.changes + 1")


def any_failing(statuses: Iterable[object]) -> bool:
    return any(status in FAILING for status in statuses)


def bump(session: Session) -> None:
    """Tell the alert evaluator that a run ended badly (in the caller's transaction)."""
    session.execute(text(BUMP_SQL))


def bump_with_cursor(cursor) -> None:
    """`bump` on a driver cursor inside its transaction (the SQLite group commit)."""
    cursor.execute(BUMP_SQL)


def read(session: Session) -> int:
    return session.execute(select(alert_state.c.changes).where(alert_state.c.id == 1)).scalar() or 0
