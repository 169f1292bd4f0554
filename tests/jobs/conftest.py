"""Factories for the job tests: runs and events written straight into the store."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from console.core.timeutil import utcnow
from console.domain.runs import insert_values
from console.store.models import run_events

_counter = itertools.count()


def run_row(*, created_at: datetime | None = None, status: str = "success", **overrides: Any) -> dict[str, Any]:
    """Column values of one run; ended runs end a second after they start."""
    n = next(_counter)
    created = created_at or utcnow()
    row = {
        "event_id": str(uuid.uuid4()),
        "run_id": f"run-{n}",
        "agent_name": "agent-a",
        "job_type": "crawl",
        "status": status,
        "start_time": created,
        "created_at": created,
        "updated_at": created,
        "end_time": None if status == "running" else created + timedelta(seconds=1),
        "duration_ms": 0 if status == "running" else 1000,
        "last_seen_at": created,
        "schema_version": 7,
    }
    row.update(overrides)
    return row


def insert_runs(db, rows: list[dict[str, Any]], chunk: int = 5000) -> None:
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        db.write(lambda s, p=part: insert_values(s, p))


def add_events(db, row: dict[str, Any], count: int) -> None:
    db.write(lambda s: s.execute(run_events.insert(), [
        {"event_id": row["event_id"], "run_id": row["run_id"], "event_type": "step",
         "timestamp": row["start_time"], "payload_json": {"i": i}, "uid": str(uuid.uuid4()),
         "created_at": row["start_time"]}
        for i in range(count)
    ]))


@pytest.fixture
def make_settings(env):
    """Settings on the test database with extra TELEMETRY_* variables."""
    from console.core.settings import load_settings

    return lambda **extra: load_settings({**env, **{k: str(v) for k, v in extra.items()}})
