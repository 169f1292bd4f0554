"""The insert watermark (SQLite): runs up to `run_watermark.through_id` are indexed and counted.

Every run with an id up to the watermark has its entry in the search index
(`runs_search`) and is accounted for in the rollups. The console's write
transactions (`rollups.own_writes`) call `absorb_foreign` first and `advance`
last: rows above the watermark at the start were inserted by another tool (ids
only grow: AUTOINCREMENT), so their hours are marked dirty for the reconcile;
at the end, one `INSERT ... SELECT` indexes everything above the watermark, the
console's own new rows included, and the watermark moves past them. One
statement per batch costs a fifth of what a per-row trigger did (migration 0009).

Search reads the rows above the watermark (only other tools' rows, between their
insert and the console's next write or reconcile) with a plain scan.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from .db import driver_cursor

_HOUR = "substr(replace(start_time, ' ', 'T'), 1, 13) || ':00:00.000000+00:00'"


def absorb_foreign(session: Session) -> int:
    """Mark the hours of other tools' new rows dirty; returns the watermark (SQLite write transaction)."""
    execute = driver_cursor(session).execute  # a few statements per write: SQLAlchemy's own work cost more
    through, highest = execute(
        "SELECT through_id, (SELECT coalesce(max(id), 0) FROM agent_runs) FROM run_watermark"
    ).fetchone()
    if highest > through:
        execute(
            f"INSERT INTO rollup_dirty (hour, changes) SELECT {_HOUR}, count(*) FROM agent_runs "
            "WHERE id > ? GROUP BY 1 ON CONFLICT (hour) DO UPDATE SET changes = changes + excluded.changes",
            (through,),
        )
    return through


def advance(session: Session, through: int) -> None:
    """Index every row above `through` and move the watermark past the newest row."""
    execute = driver_cursor(session).execute
    (highest,) = execute("SELECT coalesce(max(id), 0) FROM agent_runs").fetchone()
    if highest <= through:
        return
    execute(
        "INSERT INTO runs_search (rowid, run_id, error_summary) "
        "SELECT id, run_id, error_summary FROM agent_runs WHERE id > ?",
        (through,),
    )
    execute("UPDATE run_watermark SET through_id = ?", (highest,))


def settle(session: Session) -> None:
    """Absorb and index other tools' new rows now (the reconcile does this when the console is quiet)."""
    advance(session, absorb_foreign(session))


def behind(session: Session) -> bool:
    """True when rows above the watermark wait to be absorbed."""
    (behind_,) = (
        driver_cursor(session)
        .execute("SELECT (SELECT coalesce(max(id), 0) FROM agent_runs) > through_id FROM run_watermark")
        .fetchone()
    )
    return bool(behind_)
