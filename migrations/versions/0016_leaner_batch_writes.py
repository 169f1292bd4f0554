"""Fewer index writes per new run (indexes nothing reads go, the search index keeps rowids only);
the runs page's status counts from an index.

- `idx_runs_agent` (agent_name) repeats the first column of `idx_runs_agent_created`,
  which serves the agent filter, its newest-first order and the metadata scan of
  agent names; `idx_runs_website` repeats the first column of
  `idx_runs_website_section`. Both go.
- `idx_runs_api_posted` and `idx_runs_insight` (the older tool's) serve no filter
  and no query: the export scans by id. Both go.
- SQLite: `runs_search` becomes an FTS5 trigram table with `detail=none`: it
  stores which rows hold a trigram, not where in them. Each run's trigrams (a
  UUID run_id has 34) cost a third of what they did, and the table is about half
  the size. `q` asks it with LIKE (console/store/search.py): FTS5 narrows to the
  rows holding every trigram of the term and SQLite checks the substring on them.
- `idx_runs_job_type`, `idx_runs_host_created` and `idx_runs_environment_created`
  go on with `status`: the runs page counts a filter's runs per status (up to
  100,000 of them) from the index alone instead of reading each run's row.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

DROPPED = {
    "idx_runs_agent": (["agent_name"], None),
    "idx_runs_website": (["website"], "website"),
    "idx_runs_api_posted": (["api_posted"], None),
    "idx_runs_insight": (["insight_id"], "insight_id"),
}
COLUMNS = "run_id, error_summary"
# name: (columns before, the column whose NULLs are left out or None); each gains `status`.
WITH_STATUS = {
    "idx_runs_job_type": (["job_type", "created_at DESC"], None),
    "idx_runs_host_created": (["host", "created_at DESC"], None),
    "idx_runs_environment_created": (["environment", "created_at DESC"], "environment"),
}


def _where(present):
    if present is None:
        return {}
    condition = sa.text(f"{present} IS NOT NULL")
    return {"sqlite_where": condition, "postgresql_where": condition}


def _recreate(name: str, columns: list[str], present) -> None:
    op.drop_index(name, table_name="agent_runs", if_exists=True)
    op.create_index(name, "agent_runs", [sa.text(c) if " " in c else c for c in columns], **_where(present))


def _search_table(detail: str) -> None:
    op.execute("DROP TABLE IF EXISTS runs_search")
    op.execute(
        f"CREATE VIRTUAL TABLE runs_search USING fts5({COLUMNS}, content='agent_runs', content_rowid='id', "
        f"tokenize='trigram'{detail})"
    )
    # Every run up to the insert watermark is indexed (console/store/watermark.py).
    op.execute(
        f"INSERT INTO runs_search (rowid, {COLUMNS}) SELECT id, {COLUMNS} FROM agent_runs "
        "WHERE id <= (SELECT through_id FROM run_watermark)"
    )


def upgrade() -> None:
    for name in DROPPED:
        op.drop_index(name, table_name="agent_runs", if_exists=True)
    for name, (columns, present) in WITH_STATUS.items():
        _recreate(name, [*columns, "status"], present)
    if op.get_bind().dialect.name == "sqlite":
        _search_table(", detail='none'")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _search_table("")
    for name, (columns, present) in WITH_STATUS.items():
        _recreate(name, columns, present)
    for name, (columns, present) in DROPPED.items():
        op.create_index(name, "agent_runs", columns, **_where(present))
