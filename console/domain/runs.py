"""The run domain: create, batch, query, update, delete, associate a commit.

Plain functions over a SQLAlchemy Session (Core statements on the tables of
console.store.models, no ORM objects, no Flask). They raise console.domain.errors's
NotFound / Invalid; the API turns those into 404 / 400.
"""

from __future__ import annotations

import base64
import binascii
import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Optional

from sqlalchemy import Integer, and_, column, delete, or_, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.util import ClauseAdapter

from console.core.timeutil import format_utc, parse_timestamp, utcnow
from console.domain.errors import Invalid, NotFound
from console.domain.records import field_values, run_values
from console.domain.validation import (
    MAX_OFFSET,
    OFFSET_TOO_DEEP,
    SHORT_Q,
    STATUSES,
    CommitAssociation,
    RunCreate,
    RunUpdate,
    in_storable_range,
    normalise_status,
)
from console.store import alert_marker, counters, rollups, search
from console.store.models import agent_runs, audit_log, run_events
from console.store.runstore import (
    JSON_COLUMNS,
    driver_rows,
    insert_sqlite_rows,
    insert_with_cursor,
    set_columns,
)

c = agent_runs.c
# PostgreSQL, `q` alone: how many of the newest runs are searched first (a term in 1 % of
# them fills a page of 100 from them).
NEWEST_SCANNED = 10_000


# ---------------------------------------------------------------- create


@dataclass
class NewRuns:
    """Runs to insert with every piece of Python work done: made before the write lock is taken."""

    rows: list[Mapping[str, Any]]  # unique event_ids
    columns: list[str]  # SQLite: the columns inserted (runstore.set_columns)
    params: list[tuple]  # SQLite: each row's values in `columns` order, as the driver takes them (else empty)
    delta: rollups.Delta  # the rollup effect if every row is inserted
    rollup_rows: dict[str, list[tuple]]


def prepare_new_runs(rows: Sequence[Mapping[str, Any]], dialect: str) -> NewRuns:
    """Convert column values (unique event_ids) and aggregate their rollups, outside any transaction."""
    rows = list(rows)
    delta = rollups.Delta()
    for row in rows:
        delta.add(row, +1)
        delta.count(None, row)
    columns = set_columns(rows, list(rows[0])) if dialect == "sqlite" and rows else []
    params = driver_rows(rows, columns) if columns else []
    return NewRuns(rows, columns, params, delta, rollups.upsert_rows(delta, dialect))


_SKIP_STORED = " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"


def insert_new_runs(session: Session, new: NewRuns) -> set[str]:
    """Insert prepared runs, skipping stored event_ids; returns the event_ids inserted.

    Their rollups are recorded in the same transaction. Concurrency-safe on both
    dialects: INSERT ... ON CONFLICT DO NOTHING RETURNING.
    """
    if not new.rows:
        return set()
    with rollups.own_writes(session, inserts_only=True):
        if session.get_bind().dialect.name == "sqlite":
            returned = insert_sqlite_rows(session, new.columns, new.params, _SKIP_STORED)
            inserted = {event_id for (event_id,) in returned}
        else:
            inserted = _insert_postgresql(session, new.rows)
        if len(inserted) == len(new.rows):
            rollups.apply_delta(session, new.delta, new.rollup_rows)
        elif inserted:
            rollups.record_changes(session, [(None, row) for row in new.rows if row["event_id"] in inserted])
    if inserted and alert_marker.any_failing(row["status"] for row in new.rows if row["event_id"] in inserted):
        alert_marker.bump(session)
    return inserted


def insert_uncounted(cursor, columns: Sequence[str], params: Sequence[Sequence[Any]]) -> set[str]:
    """SQLite: insert runs (`driver_rows` values in `columns` order, unique event_ids)
    on a driver cursor inside a write transaction (`Database.write_driver`), skipping
    stored event_ids, neither counted nor indexed: they stay above the insert
    watermark for console/store/watermark.py `catch_up`. Returns the event_ids inserted."""
    if not params:
        return set()
    inserted = {event_id for (event_id,) in insert_with_cursor(cursor, columns, params, _SKIP_STORED)}
    status, event_id = columns.index("status"), columns.index("event_id")
    if inserted and alert_marker.any_failing(p[status] for p in params if p[event_id] in inserted):
        alert_marker.bump_with_cursor(cursor)
    return inserted


def insert_values(session: Session, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Insert column values (unique event_ids), skipping stored event_ids; returns those inserted."""
    return insert_new_runs(session, prepare_new_runs(rows, session.get_bind().dialect.name))


def _insert_postgresql(session: Session, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """One-row INSERT ... ON CONFLICT DO NOTHING RETURNING, sent as a psycopg pipelined executemany.

    (SQLAlchemy's multi-row VALUES statement of 500 rows is re-parsed by psycopg on
    every call, which cost more than the insert itself.)
    """
    from psycopg.types.json import Jsonb

    columns = list(rows[0])
    pick = operator.itemgetter(*columns)
    documents = [i for i, name in enumerate(columns) if name in JSON_COLUMNS]
    params = []
    for row in rows:
        values = list(pick(row))
        for i in documents:
            if values[i] is not None:
                values[i] = Jsonb(values[i])
        params.append(values)
    sql = f"INSERT INTO agent_runs ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}){_SKIP_STORED}"
    inserted: set[str] = set()
    with session.connection().connection.driver_connection.cursor() as cursor:
        cursor.executemany(sql, params, returning=True)
        while True:
            found = cursor.fetchone()
            if found is not None:
                inserted.add(found[0])
            if not cursor.nextset():
                break
    return inserted


def create_run(session: Session, record: RunCreate, *, now: Optional[datetime] = None) -> bool:
    """Store one run; True when created, False when its event_id was already stored."""
    return bool(insert_values(session, [run_values(record, now)]))


@dataclass
class BatchOutcome:
    inserted: int
    duplicates: int


def unique_by_event_id(rows: Iterable[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], int]:
    """The rows with the first of each event_id, and how many repeats were dropped."""
    seen: set[str] = set()
    unique = []
    repeats = 0
    for row in rows:
        if row["event_id"] in seen:
            repeats += 1
            continue
        seen.add(row["event_id"])
        unique.append(row)
    return unique, repeats


@dataclass
class PreparedBatch:
    new: NewRuns
    total: int


def prepare_batch(
    records: Sequence[Mapping[str, Any]], dialect: str, *, now: Optional[datetime] = None
) -> PreparedBatch:
    """A batch's runs (RunCreate's validated fields: records.field_values) made ready for
    create_prepared_batch, outside the write transaction."""
    now = now or utcnow()
    rows, _repeats = unique_by_event_id(field_values(record, now) for record in records)
    return PreparedBatch(prepare_new_runs(rows, dialect), len(records))


def create_prepared_batch(session: Session, batch: PreparedBatch) -> BatchOutcome:
    """Store a prepared batch in this transaction; repeats (stored or within the batch) are duplicates."""
    inserted = len(insert_new_runs(session, batch.new))
    return BatchOutcome(inserted=inserted, duplicates=batch.total - inserted)


def create_runs(session: Session, records: Sequence[RunCreate], *, now: Optional[datetime] = None) -> BatchOutcome:
    """Store many runs in one transaction; repeats (stored or within the batch) are duplicates."""
    fields = [record.__dict__ for record in records]
    return create_prepared_batch(session, prepare_batch(fields, session.get_bind().dialect.name, now=now))


# ---------------------------------------------------------------- read


def get_run(session: Session, event_id: str) -> Mapping[str, Any]:
    """The stored row of `event_id`, or NotFound."""
    row = session.execute(select(agent_runs).where(c.event_id == event_id)).mappings().first()
    if row is None:
        raise NotFound(f"run {event_id!r} not found")
    return row


@dataclass
class RunFilters:
    """What GET /api/v1/runs filters on; text values as the client typed them."""

    agent_name: Optional[str] = None
    status: Optional[str] = None
    job_type: Optional[str] = None
    created_before: Optional[str] = None
    created_after: Optional[str] = None
    start_time_from: Optional[str] = None
    start_time_to: Optional[str] = None
    q: Optional[str] = None
    parent_run_id: Optional[str] = None
    environment: Optional[str] = None
    host: Optional[str] = None


def parse_status_filter(value: str) -> str:
    """A status filter in the canon (aliases mapped), or Invalid."""
    status = normalise_status(value)
    if status not in STATUSES:
        raise Invalid(f"invalid status {value!r}: use one of {', '.join(STATUSES)} (or an alias)")
    return status


def parse_time_filter(name: str, value: str) -> datetime:
    """A lenient filter time (date, naive = UTC), or Invalid."""
    try:
        return in_storable_range(parse_timestamp(value, require_zone=False))
    except (ValueError, TypeError, OverflowError):
        raise Invalid(f"invalid {name} {value!r}: use ISO 8601, e.g. 2026-01-12 or 2026-01-12T10:30:00Z") from None


def encode_cursor(row: Mapping[str, Any]) -> str:
    """An opaque keyset position after `row` (newest-first order)."""
    raw = json.dumps([format_utc(row["created_at"]), row["id"]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, row_id = json.loads(raw)
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            raise ValueError("bad id")
        return parse_timestamp(created, require_zone=True), row_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Invalid("invalid cursor: pass the value from a Link header unchanged") from None


def filter_conditions(session: Session, filters: RunFilters) -> list:
    """SQL conditions for `filters`; Invalid for a bad status or time."""
    conditions = []
    for name in ("agent_name", "job_type", "parent_run_id", "environment", "host"):
        value = getattr(filters, name)
        if value is not None:
            conditions.append(c[name] == value)
    if filters.status is not None:
        conditions.append(c.status == parse_status_filter(filters.status))
    if filters.created_before is not None:
        conditions.append(c.created_at < parse_time_filter("created_before", filters.created_before))
    if filters.created_after is not None:
        conditions.append(c.created_at > parse_time_filter("created_after", filters.created_after))
    if filters.start_time_from is not None:
        conditions.append(c.start_time >= parse_time_filter("start_time_from", filters.start_time_from))
    if filters.start_time_to is not None:
        conditions.append(c.start_time <= parse_time_filter("start_time_to", filters.start_time_to))
    if filters.q:
        if len(filters.q) < search.MIN_QUERY_CHARS:
            raise Invalid(SHORT_Q)
        conditions.append(search.q_filter(session.get_bind().dialect.name, filters.q, session=session))
    return conditions


def list_runs(
    session: Session,
    filters: RunFilters,
    *,
    limit: int = 100,
    offset: int = 0,
    cursor: Optional[str] = None,
) -> tuple[list[Mapping[str, Any]], Optional[str]]:
    """Runs matching `filters`, newest created_at first, and the cursor of the next page (or None).

    With a cursor the page starts after it (keyset) and `offset` is not used.
    """
    if offset > MAX_OFFSET:
        raise Invalid(OFFSET_TOO_DEEP)
    conditions = filter_conditions(session, filters)
    created = None
    if cursor:
        created, row_id = decode_cursor(cursor)
        # The bound on created_at alone is a range of the index the page rides; the OR
        # only settles ties (written as one OR, the planner read the index from its head).
        conditions.append(and_(c.created_at <= created, or_(c.created_at < created, c.id > row_id)))
        offset = 0
    # Ties (the runs of one batch share created_at) in id order: SQLite keeps each index's
    # entries of equal keys in rowid order, so `created_at DESC, id` is the order of
    # idx_runs_created_desc and of the agent and status indexes, read as they lie. With
    # `id DESC` each group of equal times was sorted first: a whole batch of up to 5,000
    # rows read for the head of the list.
    order = (c.created_at.desc(), c.id)

    def page(*columns):
        return select(*columns).where(*conditions).order_by(*order).limit(limit + 1).offset(offset or None)

    query = page(agent_runs)
    postgresql = session.get_bind().dialect.name == "postgresql"
    q_alone = bool(filters.q) and replace(filters, q=None) == RunFilters()
    if postgresql and q_alone and offset + limit < NEWEST_SCANNED:
        rows = _among_the_newest(session, conditions[0], conditions[1:], limit, offset)
        if rows is not None:
            return rows[:limit], encode_cursor(rows[limit - 1])
    if not postgresql and q_alone and search.is_common(session, filters.q):
        ids = search.newest_match_ids(session, filters.q, offset + limit + 1, conditions[1:], created)
        if ids is not None:
            rows = _rows_in_list_order(session, ids[offset:])
            return rows[:limit], encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    if postgresql and not filters.q:
        # The page's ids first, then its rows. Asked for whole rows, PostgreSQL's planner,
        # expecting a filter's matches spread evenly over time, walks idx_runs_created_desc
        # skipping other rows (130–156 ms at 10,000,000 runs whose newest were another
        # agent's); ids alone come from the filter's index by an index-only scan, which it
        # takes (every list index ends in id there: migration 0020).
        query = select(agent_runs).where(c.id.in_(page(c.id).scalar_subquery())).order_by(*order)
    rows = list(session.execute(query).mappings())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1])
    return rows, next_cursor


def _rows_in_list_order(session: Session, ids: Sequence[int]) -> list[Mapping[str, Any]]:
    if not ids:
        return []
    return list(session.execute(select(agent_runs).where(c.id.in_(ids)).order_by(c.created_at.desc(), c.id)).mappings())


def _among_the_newest(
    session: Session, q_condition, bounds: list, limit: int, offset: int
) -> Optional[list[Mapping[str, Any]]]:
    """PostgreSQL, `q` alone: the page from the newest NEWEST_SCANNED runs (past the cursor),
    when they hold all of it and one more; else None, and the caller asks the trigram index.

    The index hands back every match to be sorted: for a term in 2 % of 10,000,000 runs,
    200,000 rows read for one page (2.2 s); the newest runs hold such a term's page."""
    newest = select(agent_runs).where(*bounds).order_by(c.created_at.desc(), c.id).limit(NEWEST_SCANNED).subquery()
    query = (
        select(newest)
        .where(ClauseAdapter(newest).traverse(q_condition))
        .order_by(newest.c.created_at.desc(), newest.c.id)
        .limit(limit + 1)
        .offset(offset or None)
    )
    rows = list(session.execute(query).mappings())
    return rows if len(rows) > limit else None


AGENT_NAMES = text(
    "WITH RECURSIVE v(x) AS (SELECT min(agent_name) FROM agent_runs UNION ALL "
    "SELECT (SELECT min(agent_name) FROM agent_runs WHERE agent_name > v.x) FROM v WHERE v.x IS NOT NULL) "
    "SELECT x FROM v WHERE x IS NOT NULL"
)  # a loose scan of `idx_runs_agent_created`: one probe per name, however many runs each has


def agent_names(session: Session) -> list[str]:
    """Every agent with a stored run, in name order."""
    return [name for (name,) in session.execute(AGENT_NAMES)]


def latest_run_per_agent(session: Session, names: Optional[Sequence[str]] = None) -> dict[str, Mapping[str, Any]]:
    """Each agent's newest run (created_at, then id), of every agent or of `names`: one probe
    of `idx_runs_agent_created` per name."""
    if names is None:
        names_sql, params = AGENT_NAMES.text, {}
    else:
        if not names:
            return {}
        params = {f"n{i}": name for i, name in enumerate(names)}
        names_sql = " UNION ALL ".join(f"SELECT CAST(:{key} AS TEXT) AS x" for key in params)
    ids = text(
        f"SELECT (SELECT id FROM agent_runs WHERE agent_name = v.x ORDER BY created_at DESC, id DESC LIMIT 1) "
        f"FROM ({names_sql}) AS v"
    ).bindparams(**params)
    newest = select(agent_runs).where(c.id.in_(ids.columns(column("id", Integer))))
    return {row["agent_name"]: row for row in session.execute(newest).mappings()}


# ---------------------------------------------------------------- change


def _rollup_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return dict(row)


def update_run(session: Session, event_id: str, change: RunUpdate, *, now: Optional[datetime] = None) -> list[str]:
    """Apply the non-null fields of `change`; returns their names. NotFound, or Invalid if none."""
    fields = [name for name in RunUpdate.model_fields if getattr(change, name) is not None]
    if not fields:
        raise Invalid("no field to update: send at least one non-null field")
    old = get_run(session, event_id)
    values = {name: getattr(change, name) for name in fields}
    values["updated_at"] = now or utcnow()
    if counters.reopens(old, values.get("status")):
        values["reopened"] = 1
    end_time = values.get("end_time")
    if end_time is not None and (old["last_seen_at"] is None or end_time > old["last_seen_at"]):
        values["last_seen_at"] = end_time
    with rollups.own_writes(session):
        session.execute(update(agent_runs).where(c.id == old["id"]).values(**values))
        rollups.record_changes(session, [(_rollup_row(old), {**old, **values})])
    if alert_marker.any_failing([values.get("status")]):
        alert_marker.bump(session)
    return fields


def associate_commit(
    session: Session, event_id: str, commit: CommitAssociation, *, now: Optional[datetime] = None
) -> Mapping[str, Any]:
    """Set the run's git_commit_* columns; returns the row as it was before. NotFound."""
    old = get_run(session, event_id)
    session.execute(
        update(agent_runs)
        .where(c.id == old["id"])
        .values(
            git_commit_hash=commit.commit_hash,
            git_commit_source=commit.commit_source,
            git_commit_author=commit.commit_author,
            git_commit_timestamp=commit.commit_timestamp,
            updated_at=now or utcnow(),
        )
    )
    return old


def delete_run(session: Session, event_id: str, *, actor: str = "api", now: Optional[datetime] = None) -> None:
    """Remove a run and its events, and say so in the audit log. NotFound."""
    old = get_run(session, event_id)
    session.execute(delete(run_events).where(run_events.c.event_id == event_id))
    with rollups.own_writes(session):
        session.execute(delete(agent_runs).where(c.id == old["id"]))
        rollups.record_changes(session, [(_rollup_row(old), None)])
    detail = {"run_id": old["run_id"], "agent_name": old["agent_name"], "status": old["status"]}
    session.execute(
        audit_log.insert().values(
            at=now or utcnow(),
            actor=actor,
            action="delete_run",
            event_id=event_id,
            detail=json.dumps(detail, separators=(",", ":")),
        )
    )


# ---------------------------------------------------------------- metadata

# How many distinct values GET /api/v1/metadata/{field} answers: by default, and at most.
METADATA_DEFAULT_LIMIT = 1000
METADATA_MAX_LIMIT = 10_000

# Fields GET /api/v1/metadata/{field} offers, and whether an index leads with them
# (then a loose index scan finds the distinct values without reading every row).
METADATA_FIELDS = {
    "agent_name": True,
    "job_type": True,
    "status": True,
    "environment": True,
    "host": True,
    "website": True,
    "parent_run_id": True,
    "git_commit_hash": True,
    "product": False,
    "product_family": False,
    "platform": False,
    "subdomain": False,
    "website_section": False,
    "trigger_type": False,
    "git_repo": False,
    "git_branch": False,
    "agent_owner": False,
    "item_name": False,
}


def distinct_values(session: Session, field: str, limit: int = METADATA_MAX_LIMIT) -> list[str]:
    """The first `limit` distinct non-null values of a run column offered by metadata, sorted. NotFound."""
    if field not in METADATA_FIELDS:
        raise NotFound(f"field {field!r} is not offered; use one of {', '.join(sorted(METADATA_FIELDS))}")
    if METADATA_FIELDS[field]:
        # A loose index scan: one index probe per distinct value, stopped by LIMIT. The first
        # MIN says IS NOT NULL, or a partial index of the set values cannot serve it (a walk of
        # every row); `> v.x` implies it for the others.
        sql = text(
            f"WITH RECURSIVE v(x) AS (SELECT MIN({field}) FROM agent_runs WHERE {field} IS NOT NULL "
            f"UNION ALL SELECT (SELECT MIN({field}) FROM agent_runs WHERE {field} > v.x) "
            f"FROM v WHERE v.x IS NOT NULL) SELECT x FROM v WHERE x IS NOT NULL LIMIT :n"
        )
        values = session.execute(sql, {"n": limit}).scalars().all()
    else:
        column = c[field]
        query = select(column).where(column.is_not(None)).distinct().order_by(column).limit(limit)
        values = session.execute(query).scalars().all()
    return sorted(values)
