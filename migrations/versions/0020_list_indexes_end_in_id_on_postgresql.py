"""PostgreSQL: the status and agent indexes go on with `id`, so that a list finds its page's ids in the index alone.

A filtered list (an agent, a job type, a status, ...) is ordered `created_at DESC, id`,
which both the filter's index and `idx_runs_created_desc` give. PostgreSQL's planner
expects matches spread evenly over time and, when the heap follows created_at, it
prefers walking idx_runs_created_desc and skipping other rows: at 10,000,000 runs
whose newest half million were another agent's, a busy agent's list walked them
(20 ms; 130–156 ms p95 for job type, environment and agent lists under more skew).
console/domain/runs.py now asks for the page's ids first, which an index that holds
the filter, created_at and id answers by an index-only scan, and the planner takes
it. The job type, host and environment indexes hold id already (migration 0019);
these three get it here. SQLite keeps the rowid (id) in every index entry: nothing
changes there.

At 10,500,000 runs on PostgreSQL the three took 31 s, under a lock that holds
writers off. An operator who cannot pause writers builds the new indexes first with
CREATE INDEX CONCURRENTLY under other names, drops the old ones and renames the new
ones; this migration then finds them ending in id and leaves them.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

INDEXES = {
    "idx_runs_status": ["status", "created_at DESC"],
    "idx_runs_agent_status_created": ["agent_name", "status", "created_at DESC"],
    "idx_runs_agent_created": ["agent_name", "created_at DESC"],
}


def _recreate(name: str, columns: list[str]) -> None:
    op.drop_index(name, table_name="agent_runs", if_exists=True)
    op.create_index(name, "agent_runs", [sa.text(c) if " " in c else c for c in columns])


def _ends_in_id(name: str) -> bool:
    definition = op.get_bind().execute(
        sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'agent_runs' AND indexname = :name"), {"name": name}
    ).scalar()
    return definition is not None and definition.replace(" ", "").endswith(",id)")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, columns in INDEXES.items():
        if not _ends_in_id(name):  # built already, online (see above)
            _recreate(name, [*columns, "id"])


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, columns in INDEXES.items():
        _recreate(name, columns)
