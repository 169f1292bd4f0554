"""The pages on PostgreSQL too (timestamptz, JSONB, trigram search, rollups)."""

from __future__ import annotations

import re

import pytest

from tests.web.conftest import HTMX, hours_ago

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])


def text(response) -> str:
    return response.get_data(as_text=True)


def test_every_page_renders_on_postgresql(client, csrf, make_run):
    make_run(run_id="pg-ok", agent_name="pg-agent", metrics_json={"n": 1})
    failed = make_run(run_id="pg-bad", agent_name="pg-agent", status="failure", error_summary="Disk Full on /data")
    zombie = make_run(run_id="pg-zombie", agent_name="pg-agent", status="running", start_time=hours_ago(3))
    body = text(client.get("/?agent=pg-agent&range=24h"))
    assert "pg-ok" in body and "pg-bad" in body
    assert re.search(r"failure <strong>1</strong>", body)
    assert "pg-bad" in text(client.get("/?q=disk+full", headers=HTMX))
    assert "failure <strong>1</strong>" in text(client.get("/runs/counts?q=disk+full", headers=HTMX))
    assert "Disk Full on /data" in text(client.get(f"/runs/{failed}"))
    assert "pg-zombie" in text(client.get("/stale"))
    client.post("/stale/mark-failed", data={"csrf_token": csrf, "event_id": zombie, "confirm": "yes"})
    assert client.get(f"/api/v1/runs/{zombie}").get_json()["status"] == "failure"
    agents = text(client.get("/agents"))
    assert 'href="/?agent=pg-agent"' in agents and "<svg" in agents
