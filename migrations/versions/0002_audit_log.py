"""Audit log: who deleted or bulk-changed runs, and when.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from console.core.timeutil import SQLITE_NOW

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "at",
            sa.Text() if sqlite else postgresql.TIMESTAMP(timezone=True),
            nullable=False,
            server_default=sa.text(SQLITE_NOW) if sqlite else sa.text("now()"),
        ),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text),
        sa.Column("detail", sa.Text),
    )
    op.create_index("idx_audit_at", "audit_log", ["at"])


def downgrade() -> None:
    op.drop_table("audit_log")
