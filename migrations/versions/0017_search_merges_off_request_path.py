"""The search index merges its segments off the request path (SQLite).

FTS5 merged `runs_search`'s segments inside every write that indexed runs
(`automerge`, default 4): at 10,000,000 runs, 0.2–0.8 s of each 500-run
transaction. This sets `automerge=0`, so a write only adds its own segment;
console/store/search_merge.py merges in short transactions of their own from the
scheduled rollup_reconcile job. `crisismerge` goes from 16 to 64 segments per
level: the bound when nothing merges. Both are FTS5 settings stored in
`runs_search_config`: the migration takes milliseconds at any size and changes
no data, so it is safe while the console serves.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def _set(name: str, value: int) -> None:
    op.execute(f"INSERT INTO runs_search (runs_search, rank) VALUES ('{name}', {value})")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _set("automerge", 0)
    _set("crisismerge", 64)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _set("automerge", 4)
    _set("crisismerge", 16)
