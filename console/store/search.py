"""The free-text `q` filter of GET /api/v1/runs.

A run matches when `q` is a substring of its run_id or error_summary
(case-insensitive for ASCII), or a prefix of its event_id (exact case).

SQLite: the FTS5 trigram table `runs_search` (migrations 0006, 0016) keeps, per
trigram, the rows that hold it (`detail=none`: not where, nor in which column,
which costs an insert a third of what positions would). For 3 characters or more,
the index names the rows holding every trigram of q (`trigram_terms`), and the
LIKE on agent_runs checks the substring on each of those rows. A shorter q is
refused (MIN_QUERY_CHARS). Rows above the
insert watermark (console/store/watermark.py: inserted by another tool since the
console last wrote) are not indexed yet and are scanned.
PostgreSQL: the pg_trgm index on PG_SEARCH_TEXT (when the extension is present).
event_id is left out of the trigram index: a UUID's trigrams doubled the cost of
every insert, and the unique index on event_id answers a prefix.
SQLite also looks run_id up by equality through this index (`run_id_is`), in place
of an index of every run_id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Optional

from sqlalchemy import ColumnElement, Integer, and_, column, func, literal, or_, select, text
from sqlalchemy.orm import Session

from console.core.timeutil import format_utc
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


# Trigrams of q asked of the index, at most: enough to make the candidates few, while a
# long q (up to 1,000 characters) does not become a thousand-term query.
MAX_TRIGRAMS = 12
INDEXED_CANDIDATES = "SELECT rowid FROM runs_search WHERE runs_search MATCH :lt_terms"


def trigram_terms(q: str) -> str:
    """An FTS5 query for the rows holding every trigram of q (3 characters or more) in either
    column: each trigram one quoted term, so `%`, `_` and quotes in q are plain text.

    With `detail=none` the index cannot say where a trigram is, nor in which column: the
    rows it names are candidates, and the caller checks the substring on each."""
    grams = list(dict.fromkeys(q[i : i + 3] for i in range(len(q) - 2)))
    if len(grams) > MAX_TRIGRAMS:
        step = (len(grams) - 1) / (MAX_TRIGRAMS - 1)
        grams = [grams[round(i * step)] for i in range(MAX_TRIGRAMS)]
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)


def indexed_candidates(session: Session, q: str) -> list[int]:
    """The ids of the indexed runs holding every trigram of q (3 characters or more) in run_id or error_summary."""
    return sorted(session.execute(text(INDEXED_CANDIDATES), {"lt_terms": trigram_terms(q)}).scalars())


def is_common(session: Session, q: str) -> bool:
    """SQLite: the index names COMMON_MATCHES runs or more for q (asked once per session:
    the filter and the list's own choice of path both need it)."""
    known = session.info.setdefault("common_q", {})
    if q not in known:
        probe = text(f"SELECT count(*) FROM ({INDEXED_CANDIDATES} LIMIT :n)")
        count = session.execute(probe, {"lt_terms": trigram_terms(q), "n": COMMON_MATCHES}).scalar_one()
        known[q] = count >= COMMON_MATCHES
    return known[q]


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
    if not (session is not None and is_common(session, q)):
        return or_(and_(_candidates(q), _substring(q)), _event_id_prefix(q))
    return or_(_substring(q), _event_id_prefix(q))


def _candidates(q: str) -> ColumnElement[bool]:
    """SQLite: the run is indexed and holds every trigram of q (3 characters or more), or is above the watermark."""
    # Rows above the insert watermark (not indexed yet) are scanned, inside the subquery:
    # an OR term without an index would turn the whole filter into a scan.
    matches = text(
        f"{INDEXED_CANDIDATES} UNION ALL "
        "SELECT id FROM agent_runs WHERE id > (SELECT through_id FROM run_watermark)"
    ).bindparams(lt_terms=trigram_terms(q))
    return agent_runs.c.id.in_(matches.columns(column("rowid", Integer)))


def run_id_is(dialect: str, run_id: str) -> ColumnElement[bool]:
    """A WHERE clause on agent_runs: `run_id = run_id`. SQLite has no index of every
    run_id (migration 0018: a random key cost every insert a page): the search index
    names the runs holding its trigrams, and a partial index holds the run_ids too
    short to have one (the condition that names it is part of the clause)."""
    equal = agent_runs.c.run_id == run_id
    if dialect != "sqlite":
        return equal
    if len(run_id) < MIN_QUERY_CHARS:
        return and_(equal, func.length(agent_runs.c.run_id) < MIN_QUERY_CHARS)
    return and_(_candidates(run_id), equal)


def _substring(q: str) -> ColumnElement[bool]:
    pattern = _like_pattern(q)
    # SQLite LIKE ignores ASCII case already (lower() would cost a call per row).
    return or_(*(agent_runs.c[name].like(literal(pattern), escape="\\") for name in SUBSTRING_COLUMNS))


# SQLite, a common `q` alone: the search index is read newest id first, in chunks that
# double from twice the runs needed (STREAM_FIRST at least, STREAM_CHUNK at most: the ids
# of a chunk are bound parameters), up to STREAM_MOST runs it names; past that, or for a
# page deeper than STREAM_NEED runs, the newest-first scan answers.
STREAM_MOST = 100_000
STREAM_FIRST = 200
STREAM_CHUNK = 8192
STREAM_NEED = 2000
_STREAM = (
    "SELECT rowid FROM runs_search WHERE runs_search MATCH :lt_terms AND rowid < :below "
    "ORDER BY rowid DESC LIMIT :n"
)
# Whether a run under id `below` sorts at or before `since` in the list (created_at newest
# first): read from the created_at index alone, however many runs are newer.
_OVERTAKEN = (
    "SELECT 1 FROM agent_runs INDEXED BY idx_runs_created_desc "
    "WHERE created_at >= :since AND created_at <= :until AND id < :below LIMIT 1"
)
_UNINDEXED = "SELECT (SELECT coalesce(max(id), 0) FROM agent_runs) > (SELECT through_id FROM run_watermark)"


def newest_match_ids(
    session: Session, q: str, need: int, bounds: Sequence, until: Optional[datetime]
) -> Optional[list[int]]:
    """SQLite, `q` alone: the ids of the first `need` matches in list order (created_at
    newest first, then id), found by reading the search index newest id first; None when
    that cannot be shown to be the list's order (the caller scans instead).

    The index names runs by id, and ids follow arrival, not created_at (a client may send
    an old created_at). So once the matches down to id `below` hold `need`, one read of the
    created_at index asks whether any run under `below` sorts at or before the last one
    needed; if none does, no run the index has yet to name can enter the page. A common
    term that the newest runs lack cost a scan of every one of them (731 ms over 1,500,000
    runs); this reads their entries in the created_at index instead.

    `bounds` are the cursor's conditions, `until` its created_at.
    """
    if need > STREAM_NEED or session.execute(text(_UNINDEXED)).scalar_one():
        return None  # deep pages; runs another tool wrote wait to be indexed: the scan sees them
    c = agent_runs.c
    keys = select(c.id, c.created_at).where(*bounds)
    prefixed = session.execute(keys.where(_event_id_prefix(q)).limit(need + 1)).tuples().all()
    if len(prefixed) > need:
        return None  # a prefix of many event_ids: the scan finds them in order
    found = dict(prefixed)
    if None in found.values():
        return None
    terms, below, chunk, named = trigram_terms(q), 1 << 62, max(2 * need, STREAM_FIRST), 0
    while named < STREAM_MOST:
        ids = session.execute(text(_STREAM), {"lt_terms": terms, "below": below, "n": chunk}).scalars().all()
        named += len(ids)
        if ids:
            below = ids[-1]
            found.update(session.execute(keys.where(c.id.in_(ids), _substring(q))).tuples().all())
            if None in found.values():
                return None  # a legacy row without created_at: the list puts it last, the scan knows how
        order = sorted(found, key=lambda i: (found[i], -i), reverse=True)  # created_at desc, then id
        if len(ids) < chunk:
            return order[:need]  # the index has named every match
        if len(order) >= need:
            since = format_utc(found[order[need - 1]])
            last = format_utc(until) if until is not None else _TOP
            overtaken = session.execute(text(_OVERTAKEN), {"since": since, "until": last, "below": below}).first()
            return None if overtaken else order[:need]
        chunk = min(2 * chunk, STREAM_CHUNK)
    return None
