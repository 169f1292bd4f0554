"""Export: a per-destination scan watermark, so each pass reads only recent runs.

`export_destinations.scan_from_id`: every run with a smaller id is settled for that
destination (posted, rejected, given up, or never to be posted), so the export job
starts its scan there instead of at the first row of a large table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("export_destinations") as batch:
        batch.add_column(sa.Column("scan_from_id", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("export_destinations") as batch:
        batch.drop_column("scan_from_id")
