"""Indexes of mostly-empty columns leave their NULLs out.

parent_run_id, insight_id, git_commit_hash, website, website_section and
environment are NULL in most runs; every index entry still cost an insert, and
every transaction that inserted a run wrote (and journaled) one more page per
index. The indexes keep their names and columns and gain `WHERE <column> IS NOT
NULL`; the list filters compare with `=`, which implies it, so both SQLite and
PostgreSQL still use them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# name: (columns, the column whose NULLs are left out)
PARTIAL = {
    "idx_runs_parent_run": (["parent_run_id"], "parent_run_id"),
    "idx_runs_insight": (["insight_id"], "insight_id"),
    "idx_runs_commit": (["git_commit_hash"], "git_commit_hash"),
    "idx_runs_website": (["website"], "website"),
    "idx_runs_website_section": (["website", "website_section"], "website"),
    "idx_runs_environment_created": (["environment", sa.text("created_at DESC")], "environment"),
}


def upgrade() -> None:
    for name, (columns, column) in PARTIAL.items():
        op.drop_index(name, table_name="agent_runs", if_exists=True)
        present = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, "agent_runs", columns, sqlite_where=present, postgresql_where=present)


def downgrade() -> None:
    for name, (columns, _column) in PARTIAL.items():
        op.drop_index(name, table_name="agent_runs")
        op.create_index(name, "agent_runs", columns)
