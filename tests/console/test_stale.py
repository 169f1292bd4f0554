"""Stale runs: the list, mark-failed, and what late news may change after a verdict."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from console.core.timeutil import format_utc, utcnow
from console.domain.stale import mark_stale_runs_failed
from tests.console.test_ingest import line


def ago(minutes: float) -> str:
    return format_utc(utcnow() - timedelta(minutes=minutes))


def start(client, event_id: str, minutes_ago: float) -> None:
    body = [line("run_started", ago(minutes_ago), event_id=event_id, run_id=event_id, start_time=ago(minutes_ago))]
    assert client.post("/api/v1/ingest", json=body).json["accepted"] == 1


def status(client, event_id: str) -> str:
    return client.get(f"/api/v1/runs/{event_id}").json["status"]


def sweep(db, event_id: str) -> None:
    changed, _ = db.write(lambda s: mark_stale_runs_failed(s, event_ids=[event_id], actor="sweep"))
    assert changed == [event_id]


def test_the_stale_list_is_running_runs_silent_longer_than_n_oldest_first(client):
    start(client, "old", 300)
    start(client, "older", 600)
    start(client, "fresh", 5)
    start(client, "ended", 900)
    client.post("/api/v1/ingest", json=[line("run_ended", ago(800), event_id="ended", start_time=ago(900))])
    response = client.get("/api/v1/runs/stale?older_than_minutes=60")
    assert response.status_code == 200
    assert [r["event_id"] for r in response.json] == ["older", "old"]
    assert 599 * 60 < response.json[0]["silent_seconds"] < 601 * 60
    assert response.json[0]["status"] == "running" and "agent_name" in response.json[0]


def test_the_default_threshold_comes_from_settings(client):
    start(client, "two-hours", 120)
    start(client, "half-hour", 30)
    assert [r["event_id"] for r in client.get("/api/v1/runs/stale").json] == ["two-hours"]


def test_silence_is_measured_from_the_latest_heartbeat_by_its_own_timestamp(client):
    start(client, "r", 300)
    client.post("/api/v1/ingest", json=[line("heartbeat", ago(10), event_id="r", run_id="r", start_time=ago(300))])
    assert client.get("/api/v1/runs/stale?older_than_minutes=60").json == []
    # A heartbeat replayed late but timestamped long ago does not make the run look alive.
    start(client, "replayed", 300)
    client.post("/api/v1/ingest", json=[line("heartbeat", ago(240), event_id="replayed", start_time=ago(300))])
    assert [r["event_id"] for r in client.get("/api/v1/runs/stale?older_than_minutes=60").json] == ["replayed"]


def test_stale_route_is_not_taken_for_an_event_id(client):
    assert client.get("/api/v1/runs/stale?older_than_minutes=abc").status_code == 422


def test_mark_failed_by_ids_changes_only_running_runs(client, db):
    start(client, "a", 120)
    start(client, "b", 120)
    client.post("/api/v1/ingest", json=[line("run_ended", ago(100), event_id="b", start_time=ago(120))])
    response = client.post("/api/v1/runs/mark-failed", json={"event_ids": ["a", "b", "missing"], "reason": "zombie"})
    assert response.status_code == 200
    assert response.json == {"count": 1, "event_ids": ["a"], "skipped": ["b", "missing"]}
    run = client.get("/api/v1/runs/a").json
    assert run["status"] == "failure"
    # With auth off the API's actor is "anonymous" (with a token: its label, e.g. token:operator#1).
    assert "anonymous" in run["error_summary"] and "zombie" in run["error_summary"]
    assert status(client, "b") == "success"
    with db.read() as session:
        marked = session.execute(
            sa.text("SELECT stale_marked_by, stale_marked_at FROM agent_runs WHERE event_id='a'")
        ).one()
        audit = session.execute(sa.text("SELECT actor, action, event_id FROM audit_log")).all()
    assert marked[0] == "api" and marked[1] is not None
    assert [tuple(a) for a in audit] == [("anonymous", "mark_failed", "a")]


def test_mark_failed_by_age(client):
    start(client, "old", 120)
    start(client, "new", 1)
    response = client.post("/api/v1/runs/mark-failed", json={"older_than_minutes": 60})
    assert response.json == {"count": 1, "event_ids": ["old"], "skipped": []}
    assert status(client, "old") == "failure" and status(client, "new") == "running"


def test_mark_failed_needs_exactly_one_selector(client):
    assert client.post("/api/v1/runs/mark-failed", json={}).status_code == 422
    assert (
        client.post("/api/v1/runs/mark-failed", json={"event_ids": ["a"], "older_than_minutes": 5}).status_code == 422
    )
    assert client.post("/api/v1/runs/mark-failed", json={"older_than_minutes": -1}).status_code == 422


def test_a_later_heartbeat_reopens_a_run_the_sweep_marked(client, db):
    start(client, "r", 120)
    sweep(db, "r")
    assert status(client, "r") == "failure"
    client.post("/api/v1/ingest", json=[line("heartbeat", ago(-1), event_id="r", start_time=ago(120))])
    run = client.get("/api/v1/runs/r").json
    assert run["status"] == "running" and run["error_summary"] is None


def test_a_later_event_reopens_a_sweep_verdict_too(client, db):
    start(client, "r", 120)
    sweep(db, "r")
    client.post("/api/v1/runs/r/events", json={"event_type": "alive", "timestamp": ago(-1)})
    assert status(client, "r") == "running"


def test_an_earlier_heartbeat_never_reopens(client, db):
    start(client, "r", 120)
    sweep(db, "r")
    client.post("/api/v1/ingest", json=[line("heartbeat", ago(60), event_id="r", start_time=ago(120))])
    client.post("/api/v1/runs/r/heartbeat", json={"timestamp": ago(30)})
    assert status(client, "r") == "failure"


def test_a_later_heartbeat_does_not_reopen_an_operator_verdict(client):
    start(client, "r", 120)
    client.post("/api/v1/runs/mark-failed", json={"event_ids": ["r"]})
    client.post("/api/v1/runs/r/heartbeat", json={"timestamp": ago(-1)})
    assert status(client, "r") == "failure"


def test_a_later_end_sets_the_final_status_after_any_verdict(client, db):
    start(client, "r", 120)
    client.post("/api/v1/runs/mark-failed", json={"event_ids": ["r"]})
    client.post(
        "/api/v1/ingest",
        json=[line("run_ended", ago(-1), {"status": "success", "duration_ms": 5}, event_id="r", start_time=ago(120))],
    )
    run = client.get("/api/v1/runs/r").json
    assert run["status"] == "success" and run["duration_ms"] == 5


def test_an_earlier_end_does_not_change_a_verdict(client, db):
    start(client, "r", 120)
    sweep(db, "r")
    client.post(
        "/api/v1/ingest", json=[line("run_ended", ago(30), {"status": "success"}, event_id="r", start_time=ago(120))]
    )
    assert status(client, "r") == "failure"
