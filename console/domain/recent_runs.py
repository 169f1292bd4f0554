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

from sqlalchemy import text
from sqlalchemy.orm import Session

from console.core.timeutil import format_utc

WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class _Count:
    through_id: int  # the newest run counted
    total: int  # the rollups' all-time total at that point
    since: datetime  # the window's start
    runs: int  # runs with created_at >= since among ids <= through_id


_counts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # engine -> _Count
_lock = threading.Lock()


# Where the runs stand: the newest id and the rollups' all-time total.
_POSITION = text("SELECT (SELECT max(id) FROM agent_runs), (SELECT sum(runs) FROM run_rollup_totals)")
# Since the last answer: the runs inserted, those of them in the window, and the runs
# counted then that have left the window since (created_at between the two starts).
_CHANGES = text(
    "SELECT (SELECT count(*) FROM agent_runs WHERE id > :last AND id <= :through), "
    "(SELECT count(*) FROM agent_runs WHERE id > :last AND id <= :through AND created_at >= :since), "
    "(SELECT count(*) FROM agent_runs WHERE created_at >= :last_since AND created_at < :since AND id <= :last)"
)
_AFRESH = text("SELECT count(*) FROM agent_runs WHERE created_at >= :since AND id <= :through")


def recent_runs(session: Session, now: datetime) -> int:
    """Runs whose created_at is within the 24 hours before `now` (or later)."""
    engine = session.get_bind()
    stamp = _stamp_for(engine.dialect.name)
    since = now - WINDOW
    through, total = (int(v or 0) for v in session.execute(_POSITION).one())
    with _lock:
        last = _counts.get(engine)
    runs = None
    if last is not None and since >= last.since and through >= last.through_id:
        added, new, left = session.execute(_CHANGES, {
            "last": last.through_id, "through": through, "since": stamp(since), "last_since": stamp(last.since),
        }).one()
        if total - last.total == added:  # else something was deleted: count afresh
            runs = last.runs + new - left
    if runs is None:
        runs = session.execute(_AFRESH, {"since": stamp(since), "through": through}).scalar_one()
    with _lock:
        _counts[engine] = _Count(through, total, since, runs)
    return runs


def _stamp_for(dialect: str):
    """Times as the dialect compares them: SQLite stores fixed UTC text."""
    return format_utc if dialect == "sqlite" else (lambda value: value)
