"""The alerts' tables (migration 0015 owns the schema; these mirror it for queries)."""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Integer, Table, Text, UniqueConstraint

from console.store.alert_marker import alert_state
from console.store.models import metadata
from console.store.types import UTCDateTime

__all__ = ["alert_attempts", "alert_channels", "alert_counters", "alert_incidents", "alert_mutes",
           "alert_notifications", "alert_rule_channels", "alert_rules", "alert_state"]

alert_channels = Table(
    "alert_channels",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),  # webhook | email | apprise
    Column("target", Text, nullable=False),  # a secret: never shown in full
    Column("created_at", UTCDateTime, nullable=False),
)

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("agent_name", Text, nullable=False),  # or "*"
    Column("job_type", Text),
    Column("kind", Text, nullable=False),  # failure | stale | missing | slow (the API's "on")
    Column("notify_resolved", Integer, nullable=False, server_default="1"),
    Column("repeat_minutes", Integer, nullable=False, server_default="0"),
    Column("failures_in_a_row", Integer, nullable=False, server_default="1"),
    Column("success_rate_below", Float),
    Column("window_minutes", Integer),
    Column("stale_minutes", Integer),
    Column("schedule", Text),
    Column("period_seconds", Integer),
    Column("grace_seconds", Integer, nullable=False, server_default="0"),
    Column("timezone", Text, nullable=False, server_default="UTC"),
    Column("duration_ms_over", Integer),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

alert_rule_channels = Table(
    "alert_rule_channels",
    metadata,
    Column("rule_id", Integer, ForeignKey("alert_rules.id", ondelete="CASCADE"), primary_key=True),
    Column("channel_id", Integer, ForeignKey("alert_channels.id", ondelete="CASCADE"), primary_key=True),
)

alert_incidents = Table(
    "alert_incidents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("rule_id", Integer, ForeignKey("alert_rules.id", ondelete="CASCADE"), nullable=False),
    Column("agent_name", Text, nullable=False),
    Column("job_type", Text),
    Column("kind", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("open_key", Text, unique=True),
    Column("state", Text, nullable=False),  # open | resolved
    Column("event_id", Text),  # the run that opened it (or, for missing, the last run seen)
    Column("detail", Text),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime),
    Column("last_notified_at", UTCDateTime),
    Column("repeats", Integer, nullable=False, server_default="0"),
)

alert_notifications = Table(
    "alert_notifications",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("notification_id", Text, nullable=False, unique=True),
    Column("incident_id", Integer, ForeignKey("alert_incidents.id", ondelete="CASCADE"), nullable=False),
    Column("channel_id", Integer, ForeignKey("alert_channels.id", ondelete="CASCADE"), nullable=False),
    Column("transition", Text, nullable=False),  # open | repeat | resolved
    Column("seq", Integer, nullable=False, server_default="0"),
    Column("state", Text, nullable=False, server_default="pending"),  # pending | sent | gave_up
    Column("group_key", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("claimed_until", UTCDateTime),
    Column("claimed_by", Text),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    UniqueConstraint("incident_id", "channel_id", "transition", "seq", name="uq_alert_notifications_once"),
)

alert_attempts = Table(
    "alert_attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("notification_id", Integer, ForeignKey("alert_notifications.id", ondelete="CASCADE"), nullable=False),
    Column("channel_id", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("outcome", Text, nullable=False),  # sent | failed | rejected
    Column("status", Integer),
    Column("error", Text),
    Column("runner", Text, nullable=False),
)

alert_mutes = Table(
    "alert_mutes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("agent_name", Text),
    Column("rule_id", Integer, ForeignKey("alert_rules.id", ondelete="CASCADE")),
    Column("until", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

alert_counters = Table(
    "alert_counters",
    metadata,
    Column("channel_kind", Text, primary_key=True),
    Column("outcome", Text, primary_key=True),
    Column("count", Integer, nullable=False, server_default="0"),
)
