"""The insert watermark (SQLite): runs up to `run_watermark.through_id` are indexed and counted.

Every run with an id up to the watermark has its entry in the search index
(`runs_search`) and is accounted for in the rollups. Runs above it were inserted
without either: single POSTs, whose group commit leaves that work out of their
short transactions (it would be a third of each), and rows other tools wrote into
the file. `catch_up` adds them to the rollups (by the SQL of console/store/rollup_tables.py,
one upsert per group and table), indexes them and moves the watermark past them,
in one transaction; ids only grow (AUTOINCREMENT), so each is counted once. The
console's other write transactions (`rollups.own_writes`) catch up first and
`advance` last, past the rows they inserted and accounted for themselves.

Who catches up: the group commit's writer every few hundred runs and when it goes
idle, every other write, every read of the rollups (console/store/reconcile.py
`ensure_fresh`), and the scheduled reconcile. The rebuild, which recomputes the
rollups from every row, only indexes (`index_without_counting`). Search reads the rows above the
watermark (a few hundred at most while the console runs) with a plain scan.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from console.store import counters
from console.store.db import driver_cursor
from console.store.rollup_tables import ADD_ROWS_ABOVE


def catch_up(session: Session) -> int:
    """Roll up, count and index every run above the watermark and move it past them; returns it (SQLite write transaction)."""
    execute = driver_cursor(session).execute  # a few statements per write: SQLAlchemy's own work cost more
    through, highest = _positions(execute)
    if highest > through:
        for statement in (*ADD_ROWS_ABOVE, *counters.ADD_ROWS_ABOVE):
            execute(statement, (through,))
        _index_and_move(execute, through, highest)
    return highest


def index_without_counting(session: Session) -> None:
    """Index the runs above the watermark and move it past them, leaving the rollups
    alone: for the rebuild, which recomputes them from every row. The monotonic
    counters (console/store/counters.py), which no rebuild touches, still count them."""
    execute = driver_cursor(session).execute
    through, highest = _positions(execute)
    if highest > through:
        for statement in counters.ADD_ROWS_ABOVE:
            execute(statement, (through,))
        _index_and_move(execute, through, highest)


def _positions(execute) -> tuple[int, int]:
    """(the watermark, the newest run's id)."""
    return execute("SELECT through_id, (SELECT coalesce(max(id), 0) FROM agent_runs) FROM run_watermark").fetchone()


def advance(session: Session, through: int) -> None:
    """Index the runs above `through` (accounted for in the rollups by their writer) and move the watermark past them."""
    execute = driver_cursor(session).execute
    (highest,) = execute("SELECT coalesce(max(id), 0) FROM agent_runs").fetchone()
    if highest > through:
        _index_and_move(execute, through, highest)


def _index_and_move(execute, through: int, highest: int) -> None:
    execute(
        "INSERT INTO runs_search (rowid, run_id, error_summary) "
        "SELECT id, run_id, error_summary FROM agent_runs WHERE id > ?",
        (through,),
    )
    execute("UPDATE run_watermark SET through_id = ?", (highest,))


def behind(session: Session) -> bool:
    """True when runs above the watermark wait to be caught up."""
    (behind_,) = (
        driver_cursor(session)
        .execute("SELECT (SELECT coalesce(max(id), 0) FROM agent_runs) > through_id FROM run_watermark")
        .fetchone()
    )
    return bool(behind_)
