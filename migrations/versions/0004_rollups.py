"""Rollups: run counts and duration histograms per (agent, status, hour).

`run_rollups` and `run_rollup_durations` are maintained on the write path
(console/store/rollups.py). On SQLite, triggers count per hour every row change made
to the rolled-up columns into `rollup_dirty`; the console subtracts its own
changes, so a non-zero count marks an hour changed by another tool, which the
background reconcile recomputes. Rows already stored (an adopted file) are rolled
up here, once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import math

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
    _fill_from_existing_runs(sqlite)


# The log-scale duration buckets of console/store/rollups.py, frozen here as of this
# revision: bucket 0 holds 0 ms, bucket b >= 1 holds [g**(b-1), g**b) with g = 2**(1/4).
_LOG_GAMMA = repr(math.log(2**0.25))
_MAX_BUCKET = 200


def _fill_from_existing_runs(sqlite: bool) -> None:
    """An adopted file already holds runs: compute their rollups once, here."""
    bind = op.get_bind()
    if bind.exec_driver_sql("SELECT 1 FROM agent_runs LIMIT 1").first() is None:
        return
    if sqlite:
        try:
            bind.exec_driver_sql("SELECT ln(2)")
        except sa.exc.OperationalError:  # SQLite built without its math functions
            bind.connection.driver_connection.create_function("ln", 1, math.log, deterministic=True)
            bind.connection.driver_connection.create_function("floor", 1, math.floor, deterministic=True)
    hour = _HOUR.format(row="agent_runs") if sqlite else "date_trunc('hour', start_time, 'UTC')"
    day = "substr(hour, 1, 10) || 'T00:00:00.000000+00:00'" if sqlite else "date_trunc('day', hour, 'UTC')"
    least = "min" if sqlite else "least"
    bucket = (
        "CASE WHEN duration_ms IS NULL OR duration_ms < 1 THEN 0 ELSE "
        f"{least}({_MAX_BUCKET}, CAST(floor(ln(duration_ms) / {_LOG_GAMMA} + 1e-9) AS INTEGER) + 1) END"
    )
    sums = ", ".join(("runs", "duration_ms_sum", *ITEM_COLUMNS))
    run_sums = "count(*), coalesce(sum(duration_ms), 0), " + ", ".join(f"coalesce(sum({n}), 0)" for n in ITEM_COLUMNS)
    summed = ", ".join(f"sum({c})" for c in ("runs", "duration_ms_sum", *ITEM_COLUMNS))
    op.execute(
        f"INSERT INTO run_rollups (hour, agent_name, status, {sums}) "
        f"SELECT {hour}, agent_name, status, {run_sums} FROM agent_runs GROUP BY 1, 2, 3"
    )
    op.execute(
        "INSERT INTO run_rollup_durations (hour, agent_name, status, bucket, runs) "
        f"SELECT {hour}, agent_name, status, {bucket}, count(*) FROM agent_runs WHERE status <> 'running' "
        "GROUP BY 1, 2, 3, 4"
    )
    op.execute(
        f"INSERT INTO run_rollup_days (day, agent_name, status, {sums}) "
        f"SELECT {day}, agent_name, status, {summed} FROM run_rollups GROUP BY 1, 2, 3"
    )
    op.execute(
        "INSERT INTO run_rollup_day_durations (day, agent_name, bucket, runs) "
        f"SELECT {day}, agent_name, bucket, sum(runs) FROM run_rollup_durations GROUP BY 1, 2, 3"
    )
    op.execute(
        f"INSERT INTO run_rollup_totals (agent_name, status, {sums}) "
        f"SELECT agent_name, status, {summed} FROM run_rollup_days GROUP BY 1, 2"
    )
    op.execute(
        "INSERT INTO run_rollup_total_durations (agent_name, bucket, runs) "
        "SELECT agent_name, bucket, sum(runs) FROM run_rollup_day_durations GROUP BY 1, 2"
    )


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
