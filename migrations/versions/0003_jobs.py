"""Scheduled jobs: job history (the claim of each firing), job state, export state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _time() -> sa.types.TypeEngine:
    return sa.Text() if op.get_bind().dialect.name == "sqlite" else postgresql.TIMESTAMP(timezone=True)


def upgrade() -> None:
    # One row per run of a job. The unique (job, scheduled_for) is the claim: the
    # process whose INSERT succeeds runs that firing, so a period never runs twice.
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job", sa.Text, nullable=False),
        sa.Column("scheduled_for", _time(), nullable=False),
        sa.Column("trigger", sa.Text, nullable=False),
        sa.Column("runner", sa.Text, nullable=False),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("ended_at", _time()),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("counts", sa.Text),
        sa.Column("error", sa.Text),
        sa.UniqueConstraint("job", "scheduled_for", name="uq_job_runs_job_scheduled_for"),
        sa.CheckConstraint("outcome IN ('running', 'success', 'failure')", name="ck_job_runs_outcome"),
        sa.CheckConstraint("trigger IN ('schedule', 'manual')", name="ck_job_runs_trigger"),
    )
    op.create_index("idx_job_runs_job_started", "job_runs", ["job", "started_at"])
    # One row per job: the next run time (written by the leader) and a pending "run now".
    op.create_table(
        "job_state",
        sa.Column("job", sa.Text, primary_key=True),
        sa.Column("next_run_at", _time()),
        sa.Column("leader", sa.Text),
        sa.Column("updated_at", _time()),
        sa.Column("run_requested_at", _time()),
        sa.Column("run_requested_by", sa.Text),
    )
    # Export destinations as first seen; runs that ended before `since` are not posted
    # there (NULL after `export --backfill`: every ended run).
    op.create_table(
        "export_destinations",
        sa.Column("destination", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("first_configured_at", _time(), nullable=False),
        sa.Column("since", _time()),
    )
    op.create_table(
        "export_state",
        sa.Column(
            "event_id", sa.Text,
            sa.ForeignKey("agent_runs.event_id", ondelete="CASCADE", name="fk_export_state_event_id_agent_runs"),
            primary_key=True,
        ),
        sa.Column("destination", sa.Text, primary_key=True),
        sa.Column("state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("claimed_until", _time()),
        sa.Column("first_tried_at", _time()),
        sa.Column("last_tried_at", _time()),
        sa.Column("posted_at", _time()),
        sa.CheckConstraint("state IN ('pending', 'posted', 'rejected', 'gave_up')", name="ck_export_state_state"),
    )
    op.create_index("idx_export_state_destination_state", "export_state", ["destination", "state"])


def downgrade() -> None:
    op.drop_table("export_state")
    op.drop_table("export_destinations")
    op.drop_table("job_state")
    op.drop_table("job_runs")
