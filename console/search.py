"""The free-text `q` filter of GET /api/v1/runs: substring of run_id, event_id, error_summary.

Case-insensitive. On SQLite it rides the FTS5 trigram table `runs_search`
(migration 0006) for 3 characters or more; on PostgreSQL the pg_trgm index on
PG_SEARCH_TEXT. Shorter strings fall back to LIKE (a scan, stopped early by LIMIT).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, literal, or_, select, text

from .models import agent_runs

PG_SEARCH_TEXT = "(coalesce(run_id, '') || ' ' || coalesce(event_id, '') || ' ' || coalesce(error_summary, ''))"
SEARCHED = ("run_id", "event_id", "error_summary")


def _like_pattern(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def q_filter(dialect: str, q: str) -> ColumnElement[bool]:
    """A WHERE clause on agent_runs matching runs whose searched text contains `q`."""
    if dialect == "postgresql":
        return text(f"{PG_SEARCH_TEXT} ILIKE :lt_q ESCAPE '\\'").bindparams(lt_q=_like_pattern(q))
    if len(q) >= 3:
        phrase = '"' + q.replace('"', '""') + '"'
        matches = (
            select(text("rowid"))
            .select_from(text("runs_search"))
            .where(text("runs_search MATCH :lt_q").bindparams(lt_q=phrase))
        )
        return agent_runs.c.id.in_(matches.scalar_subquery())
    pattern = _like_pattern(q)
    return or_(*(agent_runs.c[name].ilike(literal(pattern), escape="\\") for name in SEARCHED))
