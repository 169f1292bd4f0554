"""Alerts: channels, rules, incidents, notifications and their attempts, mutes, state.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _time() -> sa.types.TypeEngine:
    return sa.Text() if op.get_bind().dialect.name == "sqlite" else postgresql.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_channels",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.CheckConstraint("kind IN ('webhook', 'email', 'apprise')", name="ck_alert_channels_kind"),
    )
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("agent_name", sa.Text, nullable=False),
        sa.Column("job_type", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("notify_resolved", sa.Integer, nullable=False, server_default="1"),
        sa.Column("repeat_minutes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failures_in_a_row", sa.Integer, nullable=False, server_default="1"),
        sa.Column("success_rate_below", sa.Float),
        sa.Column("window_minutes", sa.Integer),
        sa.Column("stale_minutes", sa.Integer),
        sa.Column("schedule", sa.Text),
        sa.Column("period_seconds", sa.Integer),
        sa.Column("grace_seconds", sa.Integer, nullable=False, server_default="0"),
        sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"),
        sa.Column("duration_ms_over", sa.Integer),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.CheckConstraint("kind IN ('failure', 'stale', 'missing', 'slow')", name="ck_alert_rules_kind"),
    )
    op.create_table(
        "alert_rule_channels",
        sa.Column("rule_id", sa.Integer, sa.ForeignKey("alert_rules.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("channel_id", sa.Integer, sa.ForeignKey("alert_channels.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "alert_incidents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rule_id", sa.Integer, sa.ForeignKey("alert_rules.id", ondelete="CASCADE"), nullable=False),
        sa.Column("agent_name", sa.Text, nullable=False),
        sa.Column("job_type", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        # Set while open, NULL once resolved: the unique key allows one open incident per subject.
        sa.Column("open_key", sa.Text, unique=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text),
        sa.Column("detail", sa.Text),
        sa.Column("opened_at", _time(), nullable=False),
        sa.Column("resolved_at", _time()),
        sa.Column("last_notified_at", _time()),
        sa.Column("repeats", sa.Integer, nullable=False, server_default="0"),
        sa.CheckConstraint("state IN ('open', 'resolved')", name="ck_alert_incidents_state"),
    )
    op.create_index("idx_alert_incidents_state", "alert_incidents", ["state", "opened_at"])
    op.create_index("idx_alert_incidents_agent", "alert_incidents", ["agent_name", "state"])
    op.create_table(
        "alert_notifications",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("notification_id", sa.Text, nullable=False, unique=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("alert_incidents.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("channel_id", sa.Integer, sa.ForeignKey("alert_channels.id", ondelete="CASCADE"), nullable=False),
        sa.Column("transition", sa.Text, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("group_key", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", _time(), nullable=False),
        sa.Column("claimed_until", _time()),
        sa.Column("claimed_by", sa.Text),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("sent_at", _time()),
        # One notification per incident transition per channel: the claim of its creation.
        sa.UniqueConstraint("incident_id", "channel_id", "transition", "seq", name="uq_alert_notifications_once"),
        sa.CheckConstraint("state IN ('pending', 'sent', 'gave_up')", name="ck_alert_notifications_state"),
    )
    op.create_index("idx_alert_notifications_due", "alert_notifications", ["state", "next_attempt_at"])
    op.create_index("idx_alert_notifications_incident", "alert_notifications", ["incident_id"])
    op.create_table(
        "alert_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("notification_id", sa.Integer, sa.ForeignKey("alert_notifications.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("channel_id", sa.Integer, nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("runner", sa.Text, nullable=False),
    )
    op.create_index("idx_alert_attempts_channel", "alert_attempts", ["channel_id", "at"])
    op.create_index("idx_alert_attempts_notification", "alert_attempts", ["notification_id"])
    op.create_table(
        "alert_mutes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("agent_name", sa.Text),
        sa.Column("rule_id", sa.Integer, sa.ForeignKey("alert_rules.id", ondelete="CASCADE")),
        sa.Column("until", _time(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
    )
    # Every delivery attempt counted by channel kind and outcome: /metrics reads a counter that never goes down.
    op.create_table(
        "alert_counters",
        sa.Column("channel_kind", sa.Text, primary_key=True),
        sa.Column("outcome", sa.Text, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False, server_default="0"),
    )
    # One row: the change marker the run write paths bump, and the last evaluation.
    op.create_table(
        "alert_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("changes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_evaluated_at", _time()),
        sa.Column("evaluated_by", sa.Text),
        sa.Column("evaluated_from", _time()),
    )
    op.execute("INSERT INTO alert_state (id, changes) VALUES (1, 0)")


def downgrade() -> None:
    for table in ("alert_state", "alert_counters", "alert_mutes", "alert_attempts", "alert_notifications",
                  "alert_incidents", "alert_rule_channels", "alert_rules", "alert_channels"):
        op.drop_table(table)
