"""Free-text search over run_id and error_summary (the `q` filter; event_id by prefix).

SQLite: an FTS5 table with the trigram tokenizer over agent_runs (external
content, kept in sync by triggers; event_id is left out: a UUID's
trigrams would double the cost of every insert, and its unique index already
answers a prefix). PostgreSQL: a pg_trgm GIN index on the same
text (when the pg_trgm extension is available). console/store/search.py builds the
filter that rides them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = "run_id, error_summary"
# Keep in step with console/store/search.py PG_SEARCH_TEXT.
PG_SEARCH_TEXT = "(coalesce(run_id, '') || ' ' || coalesce(error_summary, ''))"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"CREATE VIRTUAL TABLE runs_search USING fts5({COLUMNS}, content='agent_runs', "
            "content_rowid='id', tokenize='trigram')"
        )
        op.execute(
            "CREATE TRIGGER runs_search_insert AFTER INSERT ON agent_runs BEGIN "
            f"INSERT INTO runs_search (rowid, {COLUMNS}) VALUES (NEW.id, NEW.run_id, NEW.error_summary); "
            "END"
        )
        op.execute(
            "CREATE TRIGGER runs_search_delete AFTER DELETE ON agent_runs BEGIN "
            f"INSERT INTO runs_search (runs_search, rowid, {COLUMNS}) "
            "VALUES ('delete', OLD.id, OLD.run_id, OLD.error_summary); "
            "END"
        )
        op.execute(
            f"CREATE TRIGGER runs_search_update AFTER UPDATE OF {COLUMNS} ON agent_runs "
            "WHEN NEW.run_id IS NOT OLD.run_id OR NEW.error_summary IS NOT OLD.error_summary BEGIN "
            f"INSERT INTO runs_search (runs_search, rowid, {COLUMNS}) "
            "VALUES ('delete', OLD.id, OLD.run_id, OLD.error_summary); "
            f"INSERT INTO runs_search (rowid, {COLUMNS}) VALUES (NEW.id, NEW.run_id, NEW.error_summary); "
            "END"
        )
        op.execute("INSERT INTO runs_search (runs_search) VALUES ('rebuild')")
    else:
        # pg_trgm ships with PostgreSQL's contrib package; without it, `q` still works
        # (an ILIKE scan), only slower. `db upgrade` after installing it does not
        # revisit this revision: see docs/performance.md for the one-line fix.
        available = (
            op.get_bind().exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'").first()
        )
        if available is None:
            return
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(f"CREATE INDEX idx_runs_search_trgm ON agent_runs USING gin ({PG_SEARCH_TEXT} gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("runs_search_insert", "runs_search_delete", "runs_search_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS runs_search")
    else:
        op.execute("DROP INDEX IF EXISTS idx_runs_search_trgm")
