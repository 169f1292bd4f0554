"""SQLite: new runs are indexed for search and noticed by the rollups per batch, not per row.

The insert triggers of 0004 (dirty hour) and 0006 (search index) fired once per
inserted row; the search trigger alone cost about 20 µs of every insert (an
`INSERT ... SELECT` of the same rows into the FTS5 table costs 2-4 µs each). They
go, and `run_watermark.through_id` takes their place: every run with an id up to
it is indexed in `runs_search` and accounted for in the rollups. The console
indexes the rows it inserted with one statement before it commits and moves the
watermark past them (console/store/watermark.py); rows above the watermark that the
console did not insert were written by another tool: their hours are marked dirty
and they are indexed at the console's next write or reconcile. The update and
delete triggers of the search index now touch only indexed rows.

PostgreSQL: nothing (its trigram index is maintained by PostgreSQL itself).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = "run_id, error_summary"
_INDEXED = "OLD.id <= (SELECT through_id FROM run_watermark)"
_DELETE_ENTRY = (
    f"INSERT INTO runs_search (runs_search, rowid, {COLUMNS}) VALUES ('delete', OLD.id, OLD.run_id, OLD.error_summary);"
)
_ADD_ENTRY = f"INSERT INTO runs_search (rowid, {COLUMNS}) VALUES (NEW.id, NEW.run_id, NEW.error_summary);"
_CHANGED = "(NEW.run_id IS NOT OLD.run_id OR NEW.error_summary IS NOT OLD.error_summary)"


def _search_triggers(condition: str) -> None:
    op.execute(f"CREATE TRIGGER runs_search_delete AFTER DELETE ON agent_runs {condition} BEGIN {_DELETE_ENTRY} END")
    update_when = f"{condition} AND {_CHANGED}" if condition else f"WHEN {_CHANGED}"
    op.execute(
        f"CREATE TRIGGER runs_search_update AFTER UPDATE OF {COLUMNS} ON agent_runs {update_when} "
        f"BEGIN {_DELETE_ENTRY} {_ADD_ENTRY} END"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        "CREATE TABLE run_watermark (id INTEGER PRIMARY KEY CHECK (id = 1), through_id INTEGER NOT NULL)"
    )
    # Every existing row was indexed and counted by the triggers being replaced.
    op.execute("INSERT INTO run_watermark (id, through_id) SELECT 1, coalesce(max(id), 0) FROM agent_runs")
    for name in ("runs_search_insert", "runs_search_delete", "runs_search_update", "rollup_dirty_insert"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    _search_triggers(f"WHEN {_INDEXED}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in ("runs_search_delete", "runs_search_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    _search_triggers("")
    op.execute(f"CREATE TRIGGER runs_search_insert AFTER INSERT ON agent_runs BEGIN {_ADD_ENTRY} END")
    op.execute(
        "CREATE TRIGGER rollup_dirty_insert AFTER INSERT ON agent_runs WHEN NOT EXISTS (SELECT 1 FROM rollup_guard) "
        "BEGIN INSERT INTO rollup_dirty (hour, changes) VALUES "
        "(substr(replace(NEW.start_time, ' ', 'T'), 1, 13) || ':00:00.000000+00:00', 1) "
        "ON CONFLICT (hour) DO UPDATE SET changes = changes + 1; END"
    )
    # Rows past the watermark (another tool's, not yet absorbed) get their dirty marks and index entries.
    op.execute(
        "INSERT INTO rollup_dirty (hour, changes) "
        "SELECT substr(replace(start_time, ' ', 'T'), 1, 13) || ':00:00.000000+00:00', count(*) FROM agent_runs "
        "WHERE id > (SELECT through_id FROM run_watermark) GROUP BY 1 "
        "ON CONFLICT (hour) DO UPDATE SET changes = changes + excluded.changes"
    )
    op.execute(
        f"INSERT INTO runs_search (rowid, {COLUMNS}) SELECT id, {COLUMNS} FROM agent_runs "
        "WHERE id > (SELECT through_id FROM run_watermark)"
    )
    op.execute("DROP TABLE run_watermark")
