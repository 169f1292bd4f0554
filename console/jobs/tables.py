"""The jobs' tables (migration 0003 owns the schema; these mirror it for queries)."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Integer, Table, Text, UniqueConstraint

from console.store.models import metadata
from console.store.types import UTCDateTime

job_runs = Table(
    "job_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job", Text, nullable=False),
    Column("scheduled_for", UTCDateTime, nullable=False),
    Column("trigger", Text, nullable=False),  # schedule | manual
    Column("runner", Text, nullable=False),  # host:pid
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("outcome", Text, nullable=False),  # running | success | failure
    Column("counts", Text),  # JSON object
    Column("error", Text),
    UniqueConstraint("job", "scheduled_for", name="uq_job_runs_job_scheduled_for"),
)

job_state = Table(
    "job_state",
    metadata,
    Column("job", Text, primary_key=True),
    Column("next_run_at", UTCDateTime),
    Column("leader", Text),
    Column("updated_at", UTCDateTime),
    Column("run_requested_at", UTCDateTime),
    Column("run_requested_by", Text),
)

export_destinations = Table(
    "export_destinations",
    metadata,
    Column("destination", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("first_configured_at", UTCDateTime, nullable=False),
    Column("since", UTCDateTime),
    Column("scan_from_id", Integer, nullable=False, server_default="0"),
)

export_state = Table(
    "export_state",
    metadata,
    Column("event_id", Text, ForeignKey("agent_runs.event_id", ondelete="CASCADE"), primary_key=True),
    Column("destination", Text, primary_key=True),
    Column("state", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("tries", Integer, nullable=False, server_default="0"),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("claimed_until", UTCDateTime),
    Column("first_tried_at", UTCDateTime),
    Column("last_tried_at", UTCDateTime),
    Column("posted_at", UTCDateTime),
)
