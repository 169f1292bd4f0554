"""Fixtures for the page tests: SQLite by default (a test may parametrize `backend`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from console.domain import runs
from console.domain.validation import RunCreate

HTMX = {"HX-Request": "true"}


@pytest.fixture(params=["sqlite"])
def backend(request) -> str:
    return request.param


def hours_ago(hours: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


def minutes_ago_on_one_day(*minutes: int) -> list[str]:
    """Start times a few minutes ago that share one UTC day, whatever the time of day
    (just after midnight they are taken from before it)."""
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    latest = now if now - midnight > timedelta(minutes=max(minutes) + 1) else midnight - timedelta(seconds=1)
    return [(latest - timedelta(minutes=m)).isoformat() for m in minutes]


@pytest.fixture
def make_run(db):
    """Store a run through the domain; returns its event_id."""
    counter = {"n": 0}

    def make(**overrides) -> str:
        counter["n"] += 1
        n = counter["n"]
        record = {
            "event_id": f"evt-{n:04d}",
            "run_id": f"run-{n:04d}",
            "agent_name": "indexer",
            "job_type": "crawl",
            "start_time": hours_ago(0.5),
            "status": "success",
            "duration_ms": 192_000,
            **overrides,
        }
        db.write(lambda s: runs.create_run(s, RunCreate.model_validate(record)))
        return record["event_id"]

    return make


@pytest.fixture
def csrf(client) -> str:
    """A CSRF token planted in the test client's session (forms echo it)."""
    with client.session_transaction() as session:
        session["csrf"] = "test-csrf-token"
    return "test-csrf-token"
