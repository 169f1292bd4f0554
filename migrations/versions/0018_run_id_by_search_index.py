"""SQLite: run_id is looked up through the search index; its own index goes.

`idx_runs_run_id` served no list filter, only the equality lookups of a run's other
attempts (the run page) and of a parent run (the OTLP export). Random run_ids
(uuid4, as the older tool's clients make them) cost that index a page per new run,
about a third of a batch insert's time at 100,000 runs. On SQLite the trigram
search index (`runs_search`) already holds every run_id: those lookups ask it for
the runs holding the run_id's trigrams and compare run_id on them
(console/store/search.py `run_id_is`); a run_id too short for a trigram (under 3
characters) is found in `idx_runs_short_run_id`, a partial index of those alone,
which a UUID never enters. PostgreSQL keeps the index (its trigram index needs the
pg_trgm extension, which may be missing).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

SHORT = sa.text("length(run_id) < 3")  # console/store/search.py MIN_QUERY_CHARS

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("idx_runs_short_run_id", "agent_runs", ["run_id"], sqlite_where=SHORT, if_not_exists=True)
        op.drop_index("idx_runs_run_id", table_name="agent_runs", if_exists=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("idx_runs_run_id", "agent_runs", ["run_id"], if_not_exists=True)
        op.drop_index("idx_runs_short_run_id", table_name="agent_runs", if_exists=True)
