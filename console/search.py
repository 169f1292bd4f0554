"""The free-text `q` filter of GET /api/v1/runs.

A run matches when `q` is a substring of its run_id or error_summary
(case-insensitive for ASCII), or a prefix of its event_id (exact case).

SQLite: the FTS5 trigram table `runs_search` (migration 0006, detail=none) answers
the substring for 3 characters or more; shorter strings, or strings holding a LIKE
wildcard, fall back to LIKE on agent_runs (a scan, stopped early by LIMIT).
PostgreSQL: the pg_trgm index on PG_SEARCH_TEXT (when the extension is present).
event_id is left out of the trigram index: a UUID's trigrams doubled the cost of
every insert, and the unique index on event_id answers a prefix.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Integer, and_, column, literal, or_, text

from .models import agent_runs

PG_SEARCH_TEXT = "(coalesce(run_id, '') || ' ' || coalesce(error_summary, ''))"
SUBSTRING_COLUMNS = ("run_id", "error_summary")
_TOP = "\U0010ffff"


def _like_pattern(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _event_id_prefix(q: str) -> ColumnElement[bool]:
    return and_(agent_runs.c.event_id >= q, agent_runs.c.event_id < q + _TOP)


def q_filter(dialect: str, q: str) -> ColumnElement[bool]:
    """A WHERE clause on agent_runs for the `q` filter, riding the search index."""
    if dialect == "postgresql":
        substring = text(f"{PG_SEARCH_TEXT} ILIKE :lt_q ESCAPE '\\'").bindparams(lt_q=_like_pattern(q))
        return or_(substring, _event_id_prefix(q))
    if len(q) >= 3 and not any(ch in q for ch in "%_\\"):
        matches = text(
            "SELECT rowid FROM runs_search WHERE run_id LIKE :lt_q "
            "UNION SELECT rowid FROM runs_search WHERE error_summary LIKE :lt_q"
        ).bindparams(lt_q=f"%{q}%")
        return or_(agent_runs.c.id.in_(matches.columns(column("rowid", Integer))), _event_id_prefix(q))
    pattern = _like_pattern(q)
    return or_(
        *(agent_runs.c[name].ilike(literal(pattern), escape="\\") for name in SUBSTRING_COLUMNS),
        _event_id_prefix(q),
    )
