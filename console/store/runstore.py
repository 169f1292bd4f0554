"""Run rows in and out of agent_runs for the batch writers (ingest, events).

Plain functions over a session: lock the runs a transaction will change
(PostgreSQL), read them, insert and update them with the rollups in step.
"""

from __future__ import annotations

import json
import operator
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Optional

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from console.core.timeutil import format_utc
from console.store import rollups
from console.store.db import driver_cursor
from console.store.models import agent_runs
from console.store.types import JSONDocument, UTCDateTime

RUN_COLUMNS = [c.name for c in agent_runs.columns if c.name != "id"]


def dialect_insert(session: Session, table):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def lock_runs(session: Session, event_ids: Sequence[str]) -> None:
    """PostgreSQL: serialise concurrent writers of the same runs (SQLite has one writer)."""
    if session.get_bind().dialect.name != "postgresql" or not event_ids:
        return
    session.execute(
        text(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtext(e) AS h FROM unnest(CAST(:ids AS text[])) AS e) s "
            "ORDER BY h"
        ),
        {"ids": list(event_ids)},
    )


def load_runs(session: Session, event_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored rows of these runs, by event_id."""
    rows: dict[str, dict[str, Any]] = {}
    ids = list(event_ids)
    for start in range(0, len(ids), 2000):
        chunk = ids[start : start + 2000]
        for row in session.execute(select(agent_runs).where(agent_runs.c.event_id.in_(chunk))).mappings():
            rows[row["event_id"]] = dict(row)
    return rows


def write_runs(
    session: Session,
    inserts: list[dict[str, Any]],
    updates: list[tuple[dict[str, Any], dict[str, Any]]],
    *,
    delta: Optional[rollups.Delta] = None,
    rollup_rows: Optional[dict[str, list[tuple]]] = None,
) -> None:
    """Insert new runs and update changed ones (grouped by changed columns), then the rollups.

    `delta`: their rollup effect, already aggregated (else computed here); `rollup_rows`:
    its upserts, when already computed.
    """
    if inserts:
        insert_runs(session, inserts)
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for old, new in updates:
        columns = tuple(sorted(k for k in new if k != "id" and new[k] != old.get(k)))
        if columns:
            by_columns[columns].append({"_id": old["id"], **{k: new[k] for k in columns}})
    for columns, params in by_columns.items():
        statement = (
            update(agent_runs)
            .where(agent_runs.c.id == bindparam("_id"))
            .values({name: bindparam(name) for name in columns})
        )
        session.execute(statement, params)
    if delta is None:
        rollups.record_changes(session, [(None, row) for row in inserts] + list(updates))
    else:
        rollups.apply_delta(session, delta, rollup_rows)


_TIME_COLUMNS = frozenset(c.name for c in agent_runs.columns if isinstance(c.type, UTCDateTime))
JSON_COLUMNS = frozenset(c.name for c in agent_runs.columns if isinstance(c.type, JSONDocument))


# SQLite's default limit of bound variables per statement (since 3.32).
SQLITE_MAX_VARIABLES = 32766


def insert_sqlite_rows(session: Session, columns: Sequence[str], rows: Sequence[Sequence[Any]], tail: str = "") -> list:
    """INSERT rows (value sequences in `columns` order) into agent_runs with multi-row VALUES statements.

    Straight to the driver, as few statements as the variable limit allows: per row
    that costs 7 us less than executemany (one statement execution per row). `tail`
    (e.g. an ON CONFLICT ... RETURNING clause) ends each statement; returns what it returns.
    """
    return insert_with_cursor(driver_cursor(session), columns, rows, tail)


def insert_with_cursor(cursor, columns: Sequence[str], rows: Sequence[Sequence[Any]], tail: str = "") -> list:
    """`insert_sqlite_rows` on a driver cursor inside a write transaction."""
    per_statement = max(1, SQLITE_MAX_VARIABLES // len(columns))
    one = "(" + ",".join("?" * len(columns)) + ")"
    head = f"INSERT INTO agent_runs ({', '.join(columns)}) VALUES "
    returned: list = []
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        cursor.execute(head + ",".join([one] * len(chunk)) + tail, [v for row in chunk for v in row])
        if tail:
            returned += cursor.fetchall()
    return returned


def insert_runs(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert new runs. SQLite: straight to the driver (SQLAlchemy's per-row work was
    as costly as SQLite's own)."""
    if session.get_bind().dialect.name != "sqlite":
        session.execute(insert(agent_runs), rows)
        return
    insert_sqlite_rows(session, RUN_COLUMNS, driver_rows(rows))


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# Columns whose NULL is what an INSERT that leaves them out stores.
_NULL_BY_DEFAULT = frozenset(c.name for c in agent_runs.columns if c.server_default is None and c.default is None)


def set_columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    """`columns` without those NULL in every row that an INSERT may leave out: a run
    leaves most of them NULL, and each bound value costs the driver and the statement."""
    every = len(rows)
    return [
        name for name in columns
        if name not in _NULL_BY_DEFAULT or list(map(operator.itemgetter(name), rows)).count(None) < every
    ]


def driver_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = RUN_COLUMNS) -> list[tuple]:
    """Rows as SQLite's driver takes them (`columns`, in order), converted exactly as the
    column types do (fixed UTC text, compact JSON), by column position rather than per value."""
    pick = operator.itemgetter(*columns)  # a tuple per row: a run has many columns
    times = [i for i, name in enumerate(columns) if name in _TIME_COLUMNS]
    documents = [i for i, name in enumerate(columns) if name in JSON_COLUMNS]
    params = []
    texts: dict[datetime, str] = {}  # created_at / updated_at are one `now` per batch
    for row in rows:
        values = list(pick(row))
        for i in times:
            value = values[i]
            if value is not None:
                text_value = texts.get(value)
                if text_value is None:
                    text_value = texts[value] = format_utc(value)
                values[i] = text_value
        for i in documents:
            if values[i] is not None:
                values[i] = _dumps(values[i])
        params.append(tuple(values))
    return params
