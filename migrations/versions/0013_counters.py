"""Monotonic counters for /metrics: runs started and finished, job failures pruned.

`run_counters` counts, per agent, every run stored (`started`) and every run that
reached a final status (`finished`, per status), and is never decremented: deleting
runs, retention and rollup rebuilds leave it alone. `agent_runs.reopened` marks a
run that left a final status for `running` again, so that its next final status
is not counted a second time. `job_failures_pruned` keeps the failures that the
pruning of job history removed.

The counters start from the runs stored now. On SQLite the runs above the insert
watermark are left to its catch-up, which counts them (as it does every new run).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_counters",
        sa.Column("counter", sa.Text, primary_key=True),  # started | finished
        sa.Column("agent_name", sa.Text, primary_key=True),
        sa.Column("status", sa.Text, primary_key=True),  # '' for started
        sa.Column("runs", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "job_failures_pruned",
        sa.Column("job", sa.Text, primary_key=True),
        sa.Column("failures", sa.BigInteger, nullable=False, server_default="0"),
    )
    # A plain ADD COLUMN on both databases (a batch copy would rebuild agent_runs).
    op.add_column("agent_runs", sa.Column("reopened", sa.Integer, nullable=True))
    counted = "id <= (SELECT through_id FROM run_watermark)" if op.get_bind().dialect.name == "sqlite" else "1 = 1"
    op.execute(
        "INSERT INTO run_counters (counter, agent_name, status, runs) "
        f"SELECT 'started', agent_name, '', count(*) FROM agent_runs WHERE {counted} GROUP BY agent_name"
    )
    op.execute(
        "INSERT INTO run_counters (counter, agent_name, status, runs) "
        "SELECT 'finished', agent_name, status, count(*) FROM agent_runs "
        f"WHERE status <> 'running' AND {counted} GROUP BY agent_name, status"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE agent_runs DROP COLUMN reopened")
    op.drop_table("job_failures_pruned")
    op.drop_table("run_counters")
