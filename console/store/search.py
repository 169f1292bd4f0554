"""The free-text `q` filter of GET /api/v1/runs.

A run matches when `q` is a substring of its run_id or error_summary
(case-insensitive for ASCII), or a prefix of its event_id (exact case).

SQLite: the FTS5 trigram table `runs_search` (migration 0006) answers the substring
for 3 characters or more as a phrase query (exact from the index: no row is read
to check it); a term too common to be worth the index is a LIKE scan newest-first,
stopped early by LIMIT. A shorter `q` is refused (MIN_QUERY_CHARS). Rows above the insert watermark (console/store/watermark.py: inserted
by another tool since the console last wrote) are not indexed yet and are scanned.
PostgreSQL: the pg_trgm index on PG_SEARCH_TEXT (when the extension is present).
event_id is left out of the trigram index: a UUID's trigrams doubled the cost of
every insert, and the unique index on event_id answers a prefix.
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy import ColumnElement, Integer, and_, column, literal, or_, text
from sqlalchemy.orm import Session

from console.store.models import agent_runs

# The shortest `q` an index answers (a trigram is 3 characters); shorter is refused,
# since a substring that short can only be found by reading every row.
MIN_QUERY_CHARS = 3
PG_SEARCH_TEXT = "(coalesce(run_id, '') || ' ' || coalesce(error_summary, ''))"
SUBSTRING_COLUMNS = ("run_id", "error_summary")
_TOP = "\U0010ffff"


def _like_pattern(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _event_id_prefix(q: str) -> ColumnElement[bool]:
    return and_(agent_runs.c.event_id >= q, agent_runs.c.event_id < q + _TOP)


# A term matching more runs than this is common: scanning newest-first finds a page
# sooner than collecting every match (at 1,000,000 runs: 20 ms against 300 ms).
COMMON_MATCHES = 2000


def _phrase(q: str) -> str:
    return '"' + q.replace('"', '""') + '"'


def _is_common(session: Session, q: str) -> bool:
    probe = text("SELECT count(*) FROM (SELECT 1 FROM runs_search WHERE runs_search MATCH :p LIMIT :n)")
    return session.execute(probe, {"p": _phrase(q), "n": COMMON_MATCHES}).scalar_one() >= COMMON_MATCHES


def q_filter(dialect: str, q: str, session: Optional[Session] = None) -> ColumnElement[bool]:
    """A WHERE clause on agent_runs for the `q` filter, riding the search index.

    Pass `session` (SQLite): a term common enough that the index would hand back
    thousands of runs is answered by a newest-first scan instead.
    """
    if dialect == "postgresql":
        substring = text(f"{PG_SEARCH_TEXT} ILIKE :lt_q ESCAPE '\\'").bindparams(lt_q=_like_pattern(q))
        return or_(substring, _event_id_prefix(q))
    if len(q) < MIN_QUERY_CHARS:
        raise ValueError(f"q needs at least {MIN_QUERY_CHARS} characters")
    if not (session is not None and _is_common(session, q)):
        # Rows above the insert watermark (another tool's, not indexed yet) are scanned,
        # inside the subquery: an OR term without an index would turn the whole filter into a scan.
        matches = text(
            "SELECT rowid FROM runs_search WHERE runs_search MATCH :lt_q UNION ALL "
            "SELECT id FROM agent_runs WHERE id > (SELECT through_id FROM run_watermark) "
            "AND (run_id LIKE :lt_like ESCAPE '\\' OR error_summary LIKE :lt_like ESCAPE '\\')"
        ).bindparams(lt_q=_phrase(q), lt_like=_like_pattern(q))
        return or_(agent_runs.c.id.in_(matches.columns(column("rowid", Integer))), _event_id_prefix(q))
    return or_(_substring(q), _event_id_prefix(q))


def _substring(q: str) -> ColumnElement[bool]:
    pattern = _like_pattern(q)
    # SQLite LIKE ignores ASCII case already (lower() would cost a call per row).
    return or_(*(agent_runs.c[name].like(literal(pattern), escape="\\") for name in SUBSTRING_COLUMNS))
