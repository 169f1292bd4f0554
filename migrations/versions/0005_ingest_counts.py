"""Ingest outcome counters: spool lines accepted, duplicate, rejected (for /metrics).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_counts",
        sa.Column("outcome", sa.Text, primary_key=True),
        sa.Column("records", sa.BigInteger, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("ingest_counts")
