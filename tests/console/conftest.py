"""Factories for the run tests: request bodies and direct inserts."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest

from console.app import create_app
from console.core.settings import load_settings

_counter = itertools.count()


def run_body(**overrides: Any) -> dict[str, Any]:
    """A valid POST /api/v1/runs body; `overrides` replace or add fields."""
    n = next(_counter)
    body = {
        "event_id": str(uuid.uuid4()),
        "run_id": f"run-{n}",
        "agent_name": "agent-a",
        "job_type": "crawl",
        "start_time": "2026-01-12T10:30:00Z",
    }
    body.update(overrides)
    return body


def post_run(client, **overrides: Any) -> dict[str, Any]:
    """POST a run; assert it was created; return the body sent."""
    body = run_body(**overrides)
    response = client.post("/api/v1/runs", json=body)
    assert response.status_code == 201, response.get_json()
    return body


@pytest.fixture
def make_app(env):
    """Build another app on the same database with extra TELEMETRY_* variables."""
    apps = []

    def build(**extra: str):
        app = create_app(load_settings({**env, **extra}), {"TESTING": True})
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["telemetry_db"].dispose()
