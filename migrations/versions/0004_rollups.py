"""Rollups: run counts and duration histograms per (agent, status, hour).

`run_rollups` and `run_rollup_durations` are maintained on the write path
(console/rollups.py). On SQLite, triggers count per hour every row change made
to the rolled-up columns into `rollup_dirty`; the console subtracts its own
changes, so a non-zero count marks an hour changed by another tool, which the
background reconcile recomputes. The tables are filled from agent_runs here.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ITEM_COLUMNS = ("items_discovered", "items_succeeded", "items_failed", "items_skipped")
ROLLED_COLUMNS = ("agent_name", "status", "start_time", "duration_ms", *ITEM_COLUMNS)
# The hour of a stored time, in the stored form (times are written as UTC text).
_HOUR = "substr(replace({row}.start_time, ' ', 'T'), 1, 13) || ':00:00.000000+00:00'"


def _time(sqlite: bool) -> sa.types.TypeEngine:
    return sa.Text() if sqlite else postgresql.TIMESTAMP(timezone=True)


# The console's own transactions insert a row into rollup_guard (and delete it before
# committing), so the triggers stay quiet for writes it accounts for itself.
_UNGUARDED = "NOT EXISTS (SELECT 1 FROM rollup_guard)"


def _mark(row: str) -> str:
    return (
        f"INSERT INTO rollup_dirty (hour, changes) VALUES ({_HOUR.format(row=row)}, 1) "
        "ON CONFLICT (hour) DO UPDATE SET changes = changes + 1;"
    )


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "run_rollups",
        sa.Column("hour", _time(sqlite), nullable=False),
        sa.Column("agent_name", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("runs", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("duration_ms_sum", sa.BigInteger, nullable=False, server_default="0"),
        *(sa.Column(n, sa.BigInteger, nullable=False, server_default="0") for n in ITEM_COLUMNS),
        sa.PrimaryKeyConstraint("hour", "agent_name", "status", name="pk_run_rollups"),
        sqlite_with_rowid=False,
    )
    op.create_index("idx_run_rollups_agent_hour", "run_rollups", ["agent_name", "hour"])
    op.create_table(
        "run_rollup_durations",
        sa.Column("hour", _time(sqlite), nullable=False),
        sa.Column("agent_name", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("bucket", sa.Integer, nullable=False),
        sa.Column("runs", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("hour", "agent_name", "status", "bucket", name="pk_run_rollup_durations"),
        sqlite_with_rowid=False,
    )
    op.create_index("idx_run_rollup_durations_agent_hour", "run_rollup_durations", ["agent_name", "hour"])
    # Coarser grains of the same sums, so that long ranges and all-time totals read
    # a few thousand rows: per day, and per agent for all time. Duration histograms
    # at these grains leave status out (percentiles are of finished runs).
    op.create_table(
        "run_rollup_days",
        sa.Column("day", _time(sqlite), nullable=False),
        sa.Column("agent_name", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("runs", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("duration_ms_sum", sa.BigInteger, nullable=False, server_default="0"),
        *(sa.Column(n, sa.BigInteger, nullable=False, server_default="0") for n in ITEM_COLUMNS),
        sa.PrimaryKeyConstraint("day", "agent_name", "status", name="pk_run_rollup_days"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "run_rollup_day_durations",
        sa.Column("day", _time(sqlite), nullable=False),
        sa.Column("agent_name", sa.Text, nullable=False),
        sa.Column("bucket", sa.Integer, nullable=False),
        sa.Column("runs", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("day", "agent_name", "bucket", name="pk_run_rollup_day_durations"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "run_rollup_totals",
        sa.Column("agent_name", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("runs", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("duration_ms_sum", sa.BigInteger, nullable=False, server_default="0"),
        *(sa.Column(n, sa.BigInteger, nullable=False, server_default="0") for n in ITEM_COLUMNS),
        sa.PrimaryKeyConstraint("agent_name", "status", name="pk_run_rollup_totals"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "run_rollup_total_durations",
        sa.Column("agent_name", sa.Text, nullable=False),
        sa.Column("bucket", sa.Integer, nullable=False),
        sa.Column("runs", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("agent_name", "bucket", name="pk_run_rollup_total_durations"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "rollup_dirty",
        sa.Column("hour", _time(sqlite), primary_key=True),
        sa.Column("changes", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table("rollup_guard", sa.Column("id", sa.Integer, primary_key=True))
    if sqlite:
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in ROLLED_COLUMNS)
        op.execute(
            f"CREATE TRIGGER rollup_dirty_insert AFTER INSERT ON agent_runs WHEN {_UNGUARDED} BEGIN {_mark('NEW')} END"
        )
        op.execute(
            f"CREATE TRIGGER rollup_dirty_delete AFTER DELETE ON agent_runs WHEN {_UNGUARDED} BEGIN {_mark('OLD')} END"
        )
        op.execute(
            f"CREATE TRIGGER rollup_dirty_update AFTER UPDATE OF {', '.join(ROLLED_COLUMNS)} ON agent_runs "
            f"WHEN {_UNGUARDED} AND ({changed}) BEGIN {_mark('OLD')} {_mark('NEW')} END"
        )
    # Existing rows (an adopted file): mark every hour dirty; the console's first
    # reconcile (or `python -m console rollups rebuild`) fills the tables.
    hour = _HOUR.format(row="agent_runs") if sqlite else "date_trunc('hour', start_time)"
    op.execute(f"INSERT INTO rollup_dirty (hour, changes) SELECT {hour}, count(*) FROM agent_runs GROUP BY 1")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("rollup_dirty_insert", "rollup_dirty_delete", "rollup_dirty_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("rollup_guard")
    op.drop_table("rollup_dirty")
    for name in ("run_rollup_total_durations", "run_rollup_totals", "run_rollup_day_durations", "run_rollup_days"):
        op.drop_table(name)
    op.drop_index("idx_run_rollup_durations_agent_hour", table_name="run_rollup_durations")
    op.drop_table("run_rollup_durations")
    op.drop_index("idx_run_rollups_agent_hour", table_name="run_rollups")
    op.drop_table("run_rollups")
