"""Baseline: agent_runs (v7 contract + ours), run_events, commits, ingested_lines.

Creates the schema on an empty database, or adopts a SQLite file made by the
older local-telemetry tool (schema v6/v7, its own `schema_migrations` table):
every row is kept, every time column the console sorts or filters on is rewritten
into the one UTC text form, and run_events / commits are rebuilt onto a real key
(agent_runs.event_id) instead of the non-unique agent_runs.run_id.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from console.core.timeutil import SQLITE_NOW, normalise_stored

import json

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = ("running", "success", "failure", "partial", "timeout", "cancelled")
COUNTERS = ("items_discovered", "items_succeeded", "items_failed", "items_skipped")
RUN_TIME_COLUMNS = ("created_at", "updated_at", "start_time", "end_time")
OUR_RUN_COLUMNS = ("last_seen_at", "last_heartbeat_at", "stale_marked_at", "stale_marked_by")

# name, columns (a "-" prefix means DESC)
RUN_INDEXES = [
    ("idx_runs_agent", ["agent_name"]),
    ("idx_runs_status", ["status"]),
    ("idx_runs_start", ["start_time"]),
    ("idx_runs_created_desc", ["-created_at"]),
    ("idx_runs_agent_status_created", ["agent_name", "status", "-created_at"]),
    ("idx_runs_agent_created", ["agent_name", "-created_at"]),
    ("idx_runs_job_type", ["job_type"]),
    ("idx_runs_parent_run", ["parent_run_id"]),
    ("idx_runs_api_posted", ["api_posted"]),
    ("idx_runs_insight", ["insight_id"]),
    ("idx_runs_commit", ["git_commit_hash"]),
    ("idx_runs_website", ["website"]),
    ("idx_runs_website_section", ["website", "website_section"]),
    ("idx_runs_status_created", ["status", "-created_at"]),
    ("idx_runs_job_type_created", ["job_type", "-created_at"]),
    ("idx_runs_environment_created", ["environment", "-created_at"]),
    ("idx_runs_host_created", ["host", "-created_at"]),
    ("idx_runs_run_id", ["run_id"]),
    ("idx_runs_status_last_seen", ["status", "last_seen_at"]),
]


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _time() -> sa.types.TypeEngine:
    return sa.Text() if _is_sqlite() else postgresql.TIMESTAMP(timezone=True)


def _json() -> sa.types.TypeEngine:
    return sa.Text() if _is_sqlite() else postgresql.JSONB()


def _now() -> sa.TextClause:
    return sa.text(SQLITE_NOW) if _is_sqlite() else sa.text("now()")


def _run_columns() -> list:
    text = sa.Text
    return [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event_id", text, nullable=False),
        sa.Column("run_id", text, nullable=False),
        sa.Column("schema_version", sa.Integer, server_default="7"),
        sa.Column("created_at", _time(), nullable=False, server_default=_now()),
        sa.Column("updated_at", _time(), server_default=_now()),
        sa.Column("start_time", _time(), nullable=False),
        sa.Column("end_time", _time()),
        sa.Column("agent_name", text, nullable=False),
        sa.Column("agent_owner", text),
        sa.Column("job_type", text, nullable=False),
        sa.Column("status", text, nullable=False, server_default="running"),
        *(sa.Column(n, text) for n in ("product", "product_family", "platform", "subdomain")),
        *(sa.Column(n, text) for n in ("website", "website_section", "item_name")),
        *(sa.Column(n, sa.Integer, server_default="0") for n in COUNTERS),
        sa.Column("duration_ms", sa.Integer, server_default="0"),
        *(sa.Column(n, text) for n in ("input_summary", "output_summary", "source_ref", "target_ref")),
        sa.Column("error_summary", text),
        sa.Column("error_details", text),
        *(sa.Column(n, text) for n in ("git_repo", "git_branch", "git_commit_hash", "git_run_tag")),
        *(sa.Column(n, text) for n in ("git_commit_source", "git_commit_author", "git_commit_timestamp")),
        sa.Column("host", text),
        sa.Column("environment", text),
        sa.Column("trigger_type", text),
        sa.Column("metrics_json", _json()),
        sa.Column("context_json", _json()),
        sa.Column("api_posted", sa.Integer, server_default="0"),
        sa.Column("api_posted_at", text),
        sa.Column("api_retry_count", sa.Integer, server_default="0"),
        sa.Column("insight_id", text),
        sa.Column("parent_run_id", text),
        sa.Column("last_seen_at", _time()),
        sa.Column("last_heartbeat_at", _time()),
        sa.Column("stale_marked_at", _time()),
        sa.Column("stale_marked_by", text),
        sa.UniqueConstraint("event_id", name="uq_agent_runs_event_id"),
        *(sa.CheckConstraint(f"{n} >= 0", name=f"ck_agent_runs_{n}_nonnegative") for n in COUNTERS),
        sa.CheckConstraint("duration_ms >= 0", name="ck_agent_runs_duration_ms_nonnegative"),
        sa.CheckConstraint("api_retry_count >= 0", name="ck_agent_runs_api_retry_count_nonnegative"),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="ck_agent_runs_status_canon"
        ),
    ]


def _create_run_events(name: str = "run_events") -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.Text),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("timestamp", _time(), nullable=False),
        sa.Column("payload_json", _json()),
        sa.Column("uid", sa.Text),
        sa.Column("created_at", _time(), server_default=_now()),
        sa.ForeignKeyConstraint(
            ["event_id"], ["agent_runs.event_id"], name="fk_run_events_event_id_agent_runs", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("uid", name="uq_run_events_uid"),
        sqlite_autoincrement=True,
    )


def _create_commits(name: str = "commits") -> None:
    op.create_table(
        name,
        sa.Column("commit_hash", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text),
        sa.Column("run_id", sa.Text),
        sa.Column("agent_name", sa.Text),
        sa.Column("repo", sa.Text),
        sa.Column("branch", sa.Text),
        sa.Column("commit_date", sa.Text),
        sa.Column("author", sa.Text),
        sa.Column("message", sa.Text),
        sa.Column("files_changed", sa.Integer),
        sa.Column("insertions", sa.Integer),
        sa.Column("deletions", sa.Integer),
        sa.Column("created_at", _time(), server_default=_now()),
        sa.ForeignKeyConstraint(
            ["event_id"], ["agent_runs.event_id"], name="fk_commits_event_id_agent_runs", ondelete="SET NULL"
        ),
    )


def _create_indexes() -> None:
    for name, columns in RUN_INDEXES:
        op.create_index(name, "agent_runs", [sa.text(c[1:] + " DESC") if c[0] == "-" else c for c in columns])
    op.create_index("idx_events_run", "run_events", ["run_id"])
    op.create_index("idx_events_event_ts", "run_events", ["event_id", "timestamp", "id"])
    op.create_index("idx_commits_run", "commits", ["run_id"])
    op.create_index("idx_commits_event", "commits", ["event_id"])
    op.create_index("idx_ingested_received", "ingested_lines", ["received_at"])


def _create_ingested_lines() -> None:
    op.create_table(
        "ingested_lines",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("received_at", _time(), nullable=False, server_default=_now()),
    )


def _legacy_tables() -> set[str]:
    inspector = sa.inspect(op.get_bind())
    return set(inspector.get_table_names())


def upgrade() -> None:
    existing = _legacy_tables()
    if "agent_runs" in existing:
        if not _is_sqlite():
            raise RuntimeError("agent_runs already exists but is not managed by Alembic; refusing to touch it")
        _adopt_legacy_sqlite(existing)
        return
    op.create_table("agent_runs", *_run_columns(), sqlite_autoincrement=True)
    _create_run_events()
    _create_commits()
    _create_ingested_lines()
    _create_indexes()


def _adopt_legacy_sqlite(existing: set[str]) -> None:
    """Rebuild an older tool's tables in place, keeping every row."""
    bind = op.get_bind()
    # A Python function does the time rewrite: legacy rows mix naive and zoned forms.
    bind.connection.driver_connection.create_function("lt_utc", 1, normalise_stored, deterministic=True)
    bind.connection.driver_connection.create_function("lt_json", 1, _unwrap_json, deterministic=True)
    legacy_columns = {c["name"] for c in sa.inspect(bind).get_columns("agent_runs")}
    for index in sa.inspect(bind).get_indexes("agent_runs"):
        op.drop_index(index["name"], table_name="agent_runs")

    op.create_table("agent_runs_adopted", *_run_columns(), sqlite_autoincrement=True)
    target = [c.name for c in _run_columns() if isinstance(c, sa.Column)]
    select = []
    for name in target:
        if name in RUN_TIME_COLUMNS and name in legacy_columns:
            select.append(f"lt_utc({name})")
        elif name in ("metrics_json", "context_json") and name in legacy_columns:
            select.append(f"lt_json({name})")
        elif name == "last_seen_at":
            select.append("lt_utc(start_time)")
        elif name in legacy_columns:
            select.append(name)
        else:
            select.append("NULL")
    op.execute(
        f"INSERT INTO agent_runs_adopted ({', '.join(target)}) SELECT {', '.join(select)} FROM agent_runs ORDER BY id"
    )
    op.drop_table("agent_runs")
    op.rename_table("agent_runs_adopted", "agent_runs")

    # run_events and commits pointed at the non-unique run_id: re-key onto the
    # newest run with that run_id (the one a person would mean).
    newest_event_id = "(SELECT r.event_id FROM agent_runs r WHERE r.run_id = old.run_id ORDER BY r.id DESC LIMIT 1)"
    _create_run_events("run_events_adopted")
    if "run_events" in existing:
        op.execute(
            "INSERT INTO run_events_adopted (id, event_id, run_id, event_type, timestamp, payload_json) "
            f"SELECT old.id, {newest_event_id}, old.run_id, old.event_type, lt_utc(old.timestamp), old.payload_json "
            "FROM run_events old ORDER BY old.id"
        )
        op.drop_table("run_events")
    op.rename_table("run_events_adopted", "run_events")

    _create_commits("commits_adopted")
    if "commits" in existing:
        op.execute(
            "INSERT INTO commits_adopted (commit_hash, event_id, run_id, agent_name, repo, branch, commit_date, "
            "author, message, files_changed, insertions, deletions, created_at) "
            f"SELECT old.commit_hash, {newest_event_id}, old.run_id, old.agent_name, old.repo, old.branch, "
            "old.commit_date, old.author, old.message, old.files_changed, old.insertions, old.deletions, "
            "lt_utc(old.created_at) FROM commits old"
        )
        op.drop_table("commits")
    op.rename_table("commits_adopted", "commits")

    _create_ingested_lines()
    _create_indexes()


def _unwrap_json(text: str | None) -> str | None:
    """A JSON string that itself holds JSON (older clients) becomes that JSON."""
    if not text:
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return json.dumps(text)  # plain text: keep it, as a JSON string
    if isinstance(value, str):
        try:
            return json.dumps(json.loads(value), separators=(",", ":"))
        except ValueError:
            return text
    return text


def downgrade() -> None:
    op.drop_table("ingested_lines")
    op.drop_table("commits")
    op.drop_table("run_events")
    op.drop_table("agent_runs")
