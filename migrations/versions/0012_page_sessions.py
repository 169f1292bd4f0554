"""Page login sessions kept on the server, so that logout and expiry end them everywhere.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _time(sqlite: bool):
    return sa.Text() if sqlite else postgresql.TIMESTAMP(timezone=True)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "page_sessions",
        sa.Column("id_hash", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("credential", sa.Text, nullable=False),
        sa.Column("created_at", _time(sqlite), nullable=False),
        sa.Column("expires_at", _time(sqlite), nullable=False),
    )
    op.create_index("idx_page_sessions_expires", "page_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("idx_page_sessions_expires", table_name="page_sessions")
    op.drop_table("page_sessions")
