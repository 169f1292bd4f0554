"""Monotonic run counters for /metrics: runs started per agent, runs finished per agent and status.

A run is `started` once, when it is stored, and `finished` once, when it first
reaches a final status (any status but `running`), whatever the path: inserted
already final, or changed from `running` by PATCH, ingest, an event, mark-failed or
the stale sweep. A run that goes back to `running` (a PATCH, or a heartbeat after a
stale verdict) is marked `reopened`, and its next final status is not counted again.
Deletes, retention and rollup rebuilds never subtract: Prometheus sees counters
that only grow, across restarts too, since they live in the database.

They are kept where the rollups are (console/store/rollups.py `Delta`, applied in the
same transaction as the runs' writes) and, on SQLite, runs above the insert
watermark (single POSTs, other tools' rows) are counted by its catch-up with
`ADD_ROWS_ABOVE` (console/store/watermark.py), as they were inserted. A status that
another tool changes directly in the SQLite file is not seen as a finish (only the
rollups of its hour are recomputed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from sqlalchemy import text
from sqlalchemy.orm import Session

STARTED, FINISHED = "started", "finished"

_ON_CONFLICT = "ON CONFLICT (counter, agent_name, status) DO UPDATE SET runs = run_counters.runs + excluded.runs"

# SQLite: count the runs above the watermark (`id > ?`), as they were inserted; NOT INDEXED
# keeps the rowid range a search (console/store/rollup_tables.py says why).
ADD_ROWS_ABOVE = (
    "INSERT INTO run_counters (counter, agent_name, status, runs) "
    f"SELECT '{STARTED}', agent_name, '', count(*) FROM agent_runs NOT INDEXED WHERE id > ? GROUP BY agent_name {_ON_CONFLICT}",
    "INSERT INTO run_counters (counter, agent_name, status, runs) "
    f"SELECT '{FINISHED}', agent_name, status, count(*) FROM agent_runs NOT INDEXED WHERE id > ? AND status <> 'running' "
    f"GROUP BY agent_name, status {_ON_CONFLICT}",
)


def _status(row: Mapping[str, Any]) -> str:
    return row.get("status") or "running"


def increments(old: Optional[Mapping[str, Any]], new: Optional[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """The counters (counter, agent, status) that the change of one run from `old` to `new` adds one to."""
    if new is None or new.get("agent_name") is None:
        return []
    agent, status = new["agent_name"], _status(new)
    out = [(STARTED, agent, "")] if old is None else []
    first_finish = old is None or (_status(old) == "running" and not old.get("reopened"))
    if status != "running" and first_finish:
        out.append((FINISHED, agent, status))
    return out


def reopens(old: Mapping[str, Any], new_status: Optional[str]) -> bool:
    """True when a change to `new_status` takes a finished run back to running."""
    return new_status == "running" and _status(old) != "running"


def add(session: Session, counts: Mapping[tuple[str, str, str], int]) -> None:
    """Add `counts` to the stored counters (in the caller's write transaction).

    One statement whatever the number of counters: on a one-run transaction (a
    single POST on PostgreSQL) an executemany of two rows cost more than the rest.
    """
    rows = [(key, n) for key, n in counts.items() if n]
    if not rows:
        return
    mark = "?" if session.get_bind().dialect.name == "sqlite" else "%s"
    values = ", ".join([f"({mark}, {mark}, {mark}, {mark})"] * len(rows))
    params = tuple(value for (counter, agent, status), n in rows for value in (counter, agent, status, n))
    # Straight to the driver: SQLAlchemy's statement work cost more than this upsert.
    session.connection().exec_driver_sql(
        f"INSERT INTO run_counters (counter, agent_name, status, runs) VALUES {values} {_ON_CONFLICT}", params
    )


def read(session: Session) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """({agent: runs started}, {(agent, status): runs finished})."""
    started: dict[str, int] = {}
    finished: dict[tuple[str, str], int] = {}
    rows = session.execute(text("SELECT counter, agent_name, status, runs FROM run_counters ORDER BY 1, 2, 3"))
    for counter, agent, status, runs in rows:
        if counter == STARTED:
            started[agent] = runs
        else:
            finished[(agent, status)] = runs
    return started, finished
