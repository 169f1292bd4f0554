"""Runs counted per job type, host and environment, so that the runs page counts those
filters per status from a few hundred rows instead of reading their runs; one agent's
days read by index.

- `run_facet_rollups` (hour, facet, value, status → runs): facet is `job_type`,
  `host` or `environment`, value that column's value (NULLs are not counted). Its
  key leads with (facet, value, hour), the read's range; `idx_run_facet_rollups_hour`
  serves the recomputation of an hour.
- `run_facet_totals` (facet, value, status → runs): the same, all time.
- SQLite: the update trigger of migration 0004 also fires when one of those
  columns changes, so that an hour another tool changed is recomputed.
- `idx_run_rollup_days_agent_day` and `idx_run_rollup_day_durations_agent_day`: one
  agent's stats read its own days, as the hour grain's (agent_name, hour) indexes
  already let it read its own hours, instead of every agent's rows of the range.

Both are filled from the runs stored now (on SQLite those up to the insert
watermark: the watermark's catch-up counts the rest, as it does every new run).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

FACETS = ("job_type", "host", "environment")
ITEM_COLUMNS = ("items_discovered", "items_succeeded", "items_failed", "items_skipped")
DAY_TABLES = ("run_rollup_days", "run_rollup_day_durations")
ROLLED_BEFORE = ("agent_name", "status", "start_time", "duration_ms", *ITEM_COLUMNS)
# As of migration 0004: the hour of a stored time, and the guard that quiets the triggers.
_HOUR = "substr(replace({row}.start_time, ' ', 'T'), 1, 13) || ':00:00.000000+00:00'"
_UNGUARDED = "NOT EXISTS (SELECT 1 FROM rollup_guard)"


def _mark(row: str) -> str:
    return (
        f"INSERT INTO rollup_dirty (hour, changes) VALUES ({_HOUR.format(row=row)}, 1) "
        "ON CONFLICT (hour) DO UPDATE SET changes = changes + 1;"
    )


def _update_trigger(columns: tuple[str, ...]) -> None:
    changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in columns)
    op.execute("DROP TRIGGER IF EXISTS rollup_dirty_update")
    op.execute(
        f"CREATE TRIGGER rollup_dirty_update AFTER UPDATE OF {', '.join(columns)} ON agent_runs "
        f"WHEN {_UNGUARDED} AND ({changed}) BEGIN {_mark('OLD')} {_mark('NEW')} END"
    )


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "run_facet_rollups",
        sa.Column("hour", sa.Text() if sqlite else postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("facet", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("runs", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("facet", "value", "hour", "status", name="pk_run_facet_rollups"),
        sqlite_with_rowid=False,
    )
    op.create_index("idx_run_facet_rollups_hour", "run_facet_rollups", ["hour"])
    op.create_table(
        "run_facet_totals",
        sa.Column("facet", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("runs", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("facet", "value", "status", name="pk_run_facet_totals"),
        sqlite_with_rowid=False,
    )
    for table in DAY_TABLES:
        op.create_index(f"idx_{table}_agent_day", table, ["agent_name", "day"])
    if sqlite:
        _update_trigger((*ROLLED_BEFORE, *FACETS))
    hour = _HOUR.format(row="agent_runs") if sqlite else "date_trunc('hour', start_time, 'UTC')"
    counted = "id <= (SELECT through_id FROM run_watermark)" if sqlite else "1 = 1"
    picked = " UNION ALL ".join(
        f"SELECT {hour} AS hour, '{name}' AS facet, {name} AS value, status FROM agent_runs "
        f"WHERE {counted} AND {name} IS NOT NULL"
        for name in FACETS
    )
    op.execute(
        "INSERT INTO run_facet_rollups (hour, facet, value, status, runs) "
        f"SELECT hour, facet, value, status, count(*) FROM ({picked}) AS f GROUP BY hour, facet, value, status"
    )
    op.execute(
        "INSERT INTO run_facet_totals (facet, value, status, runs) "
        "SELECT facet, value, status, sum(runs) FROM run_facet_rollups GROUP BY facet, value, status"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _update_trigger(ROLLED_BEFORE)
    for table in DAY_TABLES:
        op.drop_index(f"idx_{table}_agent_day", table_name=table)
    op.drop_table("run_facet_totals")
    op.drop_index("idx_run_facet_rollups_hour", table_name="run_facet_rollups")
    op.drop_table("run_facet_rollups")
