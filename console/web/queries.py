"""Reads the console pages need that the shared domain does not offer (yet).

Plain functions over a Session, no Flask: the pages call these exactly as they call
console.domain.runs. Anything here that the domain modules grow an equivalent for moves
there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from console.domain.runs import RunFilters, filter_conditions, list_runs
from console.domain.validation import STATUSES
from console.store import search
from console.store.db import Database
from console.store.models import agent_runs

c = agent_runs.c

# The deferred count reads at most this many matching rows, then shows "≥ N".
COUNT_CAP = 100_000


def runs_with_run_id(session: Session, run_id: str, limit: int = 20) -> list[Mapping[str, Any]]:
    """Runs whose run_id is `run_id` (a parent link names a run_id), newest first."""
    query = select(agent_runs).where(search.run_id_is(session.get_bind().dialect.name, run_id))
    query = query.order_by(c.created_at.desc(), c.id.desc()).limit(limit)
    return list(session.execute(query).mappings())


def capped_status_counts(
    session: Session, filters: RunFilters, cap: Optional[int] = None
) -> tuple[dict[str, int], bool]:
    """Runs per status for any filter, reading at most `cap` rows; (counts, capped)."""
    cap = cap or COUNT_CAP
    inner = select(c.status).where(*filter_conditions(session, filters)).limit(cap).subquery()
    counts = {s: 0 for s in STATUSES}
    total = 0
    for row_status, n in session.execute(select(inner.c.status, func.count()).group_by(inner.c.status)):
        total += n
        if row_status in counts:
            counts[row_status] = n
    return counts, total >= cap




def run_pages(db: Database, filters: RunFilters, max_rows: int, page_size: int = 500) -> Iterator[list[Mapping[str, Any]]]:
    """The matching runs, newest first, a keyset page at a time, `max_rows` at most.

    Each page is read in its own short transaction, so that a slow reader of the
    pages holds no connection or snapshot between them.
    """
    cursor: Optional[str] = None
    remaining = max_rows
    while remaining > 0:
        with db.read() as session:
            rows, cursor = list_runs(session, filters, limit=min(page_size, remaining), cursor=cursor)
        if rows:
            yield rows
        remaining -= len(rows)
        if cursor is None or not rows:
            return
