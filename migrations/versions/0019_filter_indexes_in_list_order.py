"""The job type, host and environment indexes hold the lists' whole order: `id` after `created_at`.

Lists are ordered `created_at DESC, id` (runs of one batch share a created_at and
come in id order). These three indexes went on with `status` after `created_at`
(migration 0016, for the runs page's counts), so within a group of equal times their
entries were in status order: SQLite sorted each group, and preferred to walk
`idx_runs_created_desc` and skip non-matching rows instead; at 10,000,000 runs, with
the newest 1.5 million runs from clients that set no environment, an environment
list took 585 ms. With `id` between `created_at` and `status` the index gives the
list's order as it lies and still holds the status for the counts.

Each index is rebuilt: about 30–60 s per index at 10,000,000 runs on SQLite, during
which the migration holds the write lock (writers wait; nothing is missed). On
PostgreSQL an operator who cannot pause writers may build the new indexes first
with CREATE INDEX CONCURRENTLY under other names, drop the old ones and rename.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

INDEXES = {
    "idx_runs_job_type": ("job_type", None),
    "idx_runs_host_created": ("host", None),
    "idx_runs_environment_created": ("environment", "environment"),
}


def _recreate(name: str, columns: list[str], present) -> None:
    where = {}
    if present:
        condition = sa.text(f"{present} IS NOT NULL")
        where = {"sqlite_where": condition, "postgresql_where": condition}
    op.drop_index(name, table_name="agent_runs", if_exists=True)
    op.create_index(name, "agent_runs", [sa.text(c) if " " in c else c for c in columns], **where)


def upgrade() -> None:
    for name, (column, present) in INDEXES.items():
        _recreate(name, [column, "created_at DESC", "id", "status"], present)


def downgrade() -> None:
    for name, (column, present) in INDEXES.items():
        _recreate(name, [column, "created_at DESC", "status"], present)
