"""How many runs were created in the last 24 hours (`recent_24h` of GET /metrics), kept up to date
by difference instead of counted afresh.

Counting the window over the created_at index reads one entry per recent run: right
after a day of ingest that is every run of the day, on every GET. Each worker keeps
the last answer with where it stood (the newest id, the all-time total of the
rollups, the window's start) and brings it up to date with two short range reads:
the runs inserted since (ids above the newest one) and the runs that have left the
window since (created_at between the old and the new start). Ids only grow
(AUTOINCREMENT / identity), and the console never changes a run's created_at; a
delete shows as a total that moved by less than the inserted runs, and then the
window is counted afresh. The caller brings the rollups up to date first
(console/store/reconcile.py `ensure_fresh`).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select, text
from sqlalchemy.orm import Session

from console.store.models import agent_runs

WINDOW = timedelta(hours=24)
c = agent_runs.c


@dataclass(frozen=True)
class _Count:
    through_id: int  # the newest run counted
    total: int  # the rollups' all-time total at that point
    since: datetime  # the window's start
    runs: int  # runs with created_at >= since among ids <= through_id


_counts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # engine -> _Count
_lock = threading.Lock()


def _scalar(session: Session, query) -> int:
    return int(session.execute(query).scalar_one() or 0)


def recent_runs(session: Session, now: datetime) -> int:
    """Runs whose created_at is within the 24 hours before `now` (or later)."""
    engine = session.get_bind()
    since = now - WINDOW
    through = _scalar(session, select(func.max(c.id)))
    total = _scalar(session, text("SELECT sum(runs) FROM run_rollup_totals"))
    with _lock:
        last = _counts.get(engine)
    if last is None or since < last.since or through < last.through_id:
        runs = _count_afresh(session, since, through)
    else:
        added = _scalar(session, select(func.count()).where(c.id > last.through_id, c.id <= through))
        if total - last.total != added:  # something was deleted
            runs = _count_afresh(session, since, through)
        else:
            new = _scalar(session, select(func.count()).where(c.id > last.through_id, c.id <= through,
                                                              c.created_at >= since))
            left = _scalar(session, select(func.count()).where(
                and_(c.created_at >= last.since, c.created_at < since, c.id <= last.through_id)))
            runs = last.runs + new - left
    with _lock:
        _counts[engine] = _Count(through, total, since, runs)
    return runs


def _count_afresh(session: Session, since: datetime, through: int) -> int:
    return _scalar(session, select(func.count()).where(c.created_at >= since, c.id <= through))
