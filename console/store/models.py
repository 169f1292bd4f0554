"""The tables. Alembic (migrations/) owns the schema; these mirror it for queries."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
)

from console.store.types import JSONDocument, UTCDateTime

# Constraint names that come out the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

STATUSES = ("running", "success", "failure", "partial", "timeout", "cancelled")
COUNTERS = ("items_discovered", "items_succeeded", "items_failed", "items_skipped")

agent_runs = Table(
    "agent_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", Text, nullable=False, unique=True),
    Column("run_id", Text, nullable=False),
    Column("schema_version", Integer, server_default="7"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime),
    Column("start_time", UTCDateTime, nullable=False),
    Column("end_time", UTCDateTime),
    Column("agent_name", Text, nullable=False),
    Column("agent_owner", Text),
    Column("job_type", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="running"),
    Column("product", Text),
    Column("product_family", Text),
    Column("platform", Text),
    Column("subdomain", Text),
    Column("website", Text),
    Column("website_section", Text),
    Column("item_name", Text),
    *(Column(name, Integer, server_default="0") for name in COUNTERS),
    Column("duration_ms", Integer, server_default="0"),
    Column("input_summary", Text),
    Column("output_summary", Text),
    Column("source_ref", Text),
    Column("target_ref", Text),
    Column("error_summary", Text),
    Column("error_details", Text),
    Column("git_repo", Text),
    Column("git_branch", Text),
    Column("git_commit_hash", Text),
    Column("git_run_tag", Text),
    Column("git_commit_source", Text),
    Column("git_commit_author", Text),
    Column("git_commit_timestamp", Text),
    Column("host", Text),
    Column("environment", Text),
    Column("trigger_type", Text),
    Column("metrics_json", JSONDocument),
    Column("context_json", JSONDocument),
    Column("api_posted", Integer, server_default="0"),
    Column("api_posted_at", Text),
    Column("api_retry_count", Integer, server_default="0"),
    Column("insight_id", Text),
    Column("parent_run_id", Text),
    # Ours: the latest time the run reported itself (start, heartbeat, event), by
    # the records' own timestamps; and who declared it stale, when.
    Column("last_seen_at", UTCDateTime),
    Column("last_heartbeat_at", UTCDateTime),
    Column("stale_marked_at", UTCDateTime),
    Column("stale_marked_by", Text),
    # 1 once a run left a final status for running: its next final status is no first finish (/metrics).
    Column("reopened", Integer),
    *(CheckConstraint(f"{name} >= 0", name=f"{name}_nonnegative") for name in COUNTERS),
    CheckConstraint("duration_ms >= 0", name="duration_ms_nonnegative"),
    CheckConstraint("api_retry_count >= 0", name="api_retry_count_nonnegative"),
    CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")",
        name="status_canon",
    ),
    sqlite_autoincrement=True,
)


def _without_nulls(column) -> dict:
    """A partial index of the rows where `column` is set (migration 0011): `column = x` implies it."""
    return {"sqlite_where": column.isnot(None), "postgresql_where": column.isnot(None)}


def _list_indexes(dialect: str, *tail) -> list[Index]:
    """The status and agent lists' indexes on `dialect`, their columns followed by `tail`."""
    c = agent_runs.c
    return [
        Index("idx_runs_status", c.status, c.created_at.desc(), *tail).ddl_if(dialect=dialect),
        Index("idx_runs_agent_status_created", c.agent_name, c.status, c.created_at.desc(), *tail).ddl_if(dialect=dialect),
        Index("idx_runs_agent_created", c.agent_name, c.created_at.desc(), *tail).ddl_if(dialect=dialect),
    ]


# The older tool's index names, so that adopted files and new ones look alike; each serves a
# filter, an order or a metadata scan (migration 0016 dropped those nothing read).
RUN_INDEXES = [
    # Leading with the older tool's column, then newest first (migration 0010).
    Index("idx_runs_start", agent_runs.c.start_time),
    Index("idx_runs_created_desc", agent_runs.c.created_at.desc()),
    # The status and agent lists. On PostgreSQL they go on with id (migration 0020), so that
    # a list finds its page's ids in the index alone (console/domain/runs.py); SQLite keeps
    # the rowid (id) in every index entry already.
    *_list_indexes("sqlite"),
    *_list_indexes("postgresql", agent_runs.c.id),
    # job_type, host and environment go on with id, the lists' tie-break, and status (migrations
    # 0016, 0019): a list reads the index in its order, and the runs page counts a filter's
    # runs per status from the index alone.
    Index("idx_runs_job_type", agent_runs.c.job_type, agent_runs.c.created_at.desc(), agent_runs.c.id,
          agent_runs.c.status),
    Index("idx_runs_parent_run", agent_runs.c.parent_run_id, **_without_nulls(agent_runs.c.parent_run_id)),
    Index("idx_runs_commit", agent_runs.c.git_commit_hash, **_without_nulls(agent_runs.c.git_commit_hash)),
    Index(
        "idx_runs_website_section",
        agent_runs.c.website,
        agent_runs.c.website_section,
        **_without_nulls(agent_runs.c.website),
    ),
    # Ours: keyset lists by one filter, newest first, and the stale list (running runs only).
    Index(
        "idx_runs_environment_created",
        agent_runs.c.environment,
        agent_runs.c.created_at.desc(),
        agent_runs.c.id,
        agent_runs.c.status,
        **_without_nulls(agent_runs.c.environment),
    ),
    Index("idx_runs_host_created", agent_runs.c.host, agent_runs.c.created_at.desc(), agent_runs.c.id,
          agent_runs.c.status),
    # PostgreSQL only: SQLite looks run_id up through the search index, and keeps in a partial
    # index only the run_ids too short for a trigram (migration 0018, console/store/search.py).
    Index("idx_runs_run_id", agent_runs.c.run_id).ddl_if(dialect="postgresql"),
    Index(
        "idx_runs_short_run_id",
        agent_runs.c.run_id,
        sqlite_where=func.length(agent_runs.c.run_id) < 3,
    ).ddl_if(dialect="sqlite"),
    Index(
        "idx_runs_running_last_seen",
        agent_runs.c.last_seen_at,
        sqlite_where=agent_runs.c.status == "running",
        postgresql_where=agent_runs.c.status == "running",
    ),
]

run_events = Table(
    "run_events",
    metadata,
    Column("id", Integer, primary_key=True),
    # The run's event_id: a real key (the older tool referenced the non-unique run_id).
    Column("event_id", Text, ForeignKey("agent_runs.event_id", ondelete="CASCADE")),
    Column("run_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("timestamp", UTCDateTime, nullable=False),
    Column("payload_json", JSONDocument),
    # Idempotency key of the event (spool line id or the client's id).
    Column("uid", Text, unique=True),
    Column("created_at", UTCDateTime),
    sqlite_autoincrement=True,
)
Index("idx_events_run", run_events.c.run_id)
Index("idx_events_event_ts", run_events.c.event_id, run_events.c.timestamp, run_events.c.id)

commits = Table(
    "commits",
    metadata,
    Column("commit_hash", Text, primary_key=True),
    Column("event_id", Text, ForeignKey("agent_runs.event_id", ondelete="SET NULL")),
    Column("run_id", Text),
    Column("agent_name", Text),
    Column("repo", Text),
    Column("branch", Text),
    Column("commit_date", Text),
    Column("author", Text),
    Column("message", Text),
    Column("files_changed", Integer),
    Column("insertions", Integer),
    Column("deletions", Integer),
    Column("created_at", UTCDateTime),
)
Index("idx_commits_run", commits.c.run_id)
Index("idx_commits_event", commits.c.event_id)

# Spool lines already applied (by line id), so that a replayed line changes nothing.
ingested_lines = Table(
    "ingested_lines",
    metadata,
    Column("id", Text, primary_key=True),
    Column("received_at", UTCDateTime, nullable=False),
)
Index("idx_ingested_received", ingested_lines.c.received_at)

# Who deleted or bulk-changed runs (actor: "api", "operator:<name>", "sweep").
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("event_id", Text),
    Column("detail", Text),
)
Index("idx_audit_at", audit_log.c.at)

# Page logins (console/domain/sessions.py): the cookie holds a random id, the row its
# hash, who logged in, and a digest of the credential used (a rotated token or a
# changed password ends the session). Logout deletes the row.
page_sessions = Table(
    "page_sessions",
    metadata,
    Column("id_hash", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("credential", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)
Index("idx_page_sessions_expires", page_sessions.c.expires_at)
