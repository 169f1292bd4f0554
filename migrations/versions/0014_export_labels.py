"""Export destination labels keep the scheme and host only.

A label held the destination's URL path, which for Slack, Discord and Apps Script
webhooks is the secret itself; the pages and logs showed it. Stored labels are cut
to scheme://host[:port], as the export job now writes them. The paths cannot be
restored on downgrade (nor need to be: the label is only shown).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from console.core.settings import url_origin

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

destinations = sa.table("export_destinations", sa.column("destination", sa.Text), sa.column("label", sa.Text))


def upgrade() -> None:
    conn = op.get_bind()
    for key, label in conn.execute(sa.select(destinations.c.destination, destinations.c.label)).all():
        origin = url_origin(label) if "://" in label else label
        if origin != label:
            conn.execute(destinations.update().where(destinations.c.destination == key).values(label=origin))


def downgrade() -> None:
    pass
