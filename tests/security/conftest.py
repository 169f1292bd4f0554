"""Security and bad-input tests: fixtures that seed a store and dump it whole."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from console.store import watermark
from tests.reliability.support import deselect_soak_unless_asked


def pytest_collection_modifyitems(config, items):
    deselect_soak_unless_asked(config, items)


# Counters of what the console was sent (for /metrics), not stored data.
NOT_DATA = {"ingest_counts"}


def dump_store(db) -> dict[str, list]:
    """Every row of every table (sorted), to compare a store before and after a request.

    Single POSTs are counted and indexed by the insert watermark's catch-up, which the
    console runs at a moment of its choosing (when idle, before a read of the
    rollups): catch up first, so that a dump shows what is stored, not when.
    """
    if db.dialect == "sqlite":
        db.write(watermark.catch_up)
    out = {}
    with db.engine.connect() as conn:
        for name in sorted(set(sa.inspect(conn).get_table_names()) - NOT_DATA):
            rows = conn.execute(sa.text(f'SELECT * FROM "{name}"')).all()
            out[name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def run_body(**overrides) -> dict:
    body = {"event_id": str(uuid.uuid4()), "run_id": f"run-{uuid.uuid4().hex[:8]}", "agent_name": "seed-agent",
            "job_type": "seed", "start_time": (datetime.now(UTC) - timedelta(minutes=5)).isoformat()}
    body.update(overrides)
    return body


@pytest.fixture
def seeded(client) -> list[str]:
    """Two runs (one running, one ended) with events; returns their event_ids."""
    ids = []
    for status in ("running", "success"):
        body = run_body(status=status, error_summary="seed")
        assert client.post("/api/v1/runs", json=body).status_code == 201
        resp = client.post(f"/api/v1/runs/{body['event_id']}/events",
                           json=[{"event_type": "step", "timestamp": body["start_time"], "payload": {"i": 1}}])
        assert resp.status_code == 201, resp.get_json()
        ids.append(body["event_id"])
    return ids


@pytest.fixture
def db_for():
    """A function that opens the store of a console's env (for dumps beside a real `serve`)."""
    from console.core.settings import load_settings
    from console.store.db import Database

    opened = []

    def open_store(env: dict[str, str]) -> Database:
        opened.append(Database(load_settings(env)))
        return opened[-1]

    yield open_store
    for db in opened:
        db.dispose()
