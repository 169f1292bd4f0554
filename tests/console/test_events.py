"""A run's events and heartbeats: GET/POST /runs/{event_id}/events, POST /runs/{event_id}/heartbeat."""

from __future__ import annotations

from urllib.parse import urlparse

import sqlalchemy as sa

from tests.console.test_ingest import line


def make_run(client, event_id: str = "ev-1", **data) -> None:
    body = [line("run_started", "2026-01-12T10:00:00Z", data, event_id=event_id)]
    assert client.post("/api/v1/ingest", json=body).json["accepted"] == 1


def test_events_are_listed_oldest_first_in_pages_with_a_link(client):
    make_run(client)
    events = [
        {"event_type": f"step-{i}", "timestamp": f"2026-01-12T10:{59 - i:02d}:00Z", "payload": {"i": i}}
        for i in range(5)
    ]
    response = client.post("/api/v1/runs/ev-1/events", json=events)
    assert response.status_code == 201
    assert response.json == {"inserted": 5, "duplicates": 0}
    first = client.get("/api/v1/runs/ev-1/events?limit=2")
    assert first.status_code == 200
    assert [e["event_type"] for e in first.json] == ["step-4", "step-3"]
    assert set(first.json[0]) == {"id", "event_type", "timestamp", "payload"}
    assert first.json[0]["timestamp"] == "2026-01-12T10:55:00.000000+00:00"
    link = first.headers["Link"]
    assert link.endswith('>; rel="next"') and link.startswith("<http://")
    url = urlparse(link[1 : link.index(">")])
    assert url.path == "/api/v1/runs/ev-1/events" and "limit=2" in url.query
    seen = [e["event_type"] for e in first.json]
    while "Link" in (page := client.get(f"{url.path}?{url.query}")).headers:
        seen += [e["event_type"] for e in page.json]
        url = urlparse(page.headers["Link"][1 : page.headers["Link"].index(">")])
    seen += [e["event_type"] for e in page.json]
    assert seen == [f"step-{i}" for i in (4, 3, 2, 1, 0)]


def test_one_event_object_is_accepted_and_ids_make_it_idempotent(client):
    make_run(client)
    event = {"event_type": "checkpoint", "timestamp": "2026-01-12T10:01:00Z", "payload": "x", "id": "evt-1"}
    assert client.post("/api/v1/runs/ev-1/events", json=event).json == {"inserted": 1, "duplicates": 0}
    again = client.post("/api/v1/runs/ev-1/events", json=[event, event])
    assert again.status_code == 201
    assert again.json == {"inserted": 0, "duplicates": 2}
    assert len(client.get("/api/v1/runs/ev-1/events").json) == 1


def test_events_of_an_unknown_run_are_404(client):
    assert client.get("/api/v1/runs/nope/events").status_code == 404
    response = client.post("/api/v1/runs/nope/events", json={"event_type": "x"})
    assert response.status_code == 404
    assert response.json == {"detail": "run not found"}


def test_a_bad_event_is_422_and_a_bad_cursor_400(client):
    make_run(client)
    assert client.post("/api/v1/runs/ev-1/events", json={"payload": 1}).status_code == 422
    assert (
        client.post(
            "/api/v1/runs/ev-1/events", json={"event_type": "x", "timestamp": "2026-01-12T10:00:00"}
        ).status_code
        == 422
    )
    assert client.get("/api/v1/runs/ev-1/events?limit=0").status_code == 422
    assert client.get("/api/v1/runs/ev-1/events?cursor=garbage").status_code == 400


def test_an_event_moves_last_seen_forward_by_its_own_timestamp(client, db):
    make_run(client)
    client.post("/api/v1/runs/ev-1/events", json={"event_type": "x", "timestamp": "2026-01-12T11:00:00Z"})
    client.post("/api/v1/runs/ev-1/events", json={"event_type": "y", "timestamp": "2026-01-12T10:30:00Z"})
    with db.read() as session:
        seen = session.execute(sa.text("SELECT last_seen_at FROM agent_runs")).scalar_one()
    assert str(seen).startswith("2026-01-12") and "11:00:00" in str(seen)


def test_a_heartbeat_records_its_time(client):
    make_run(client)
    response = client.post("/api/v1/runs/ev-1/heartbeat", json={"timestamp": "2026-01-12T10:10:00+02:00"})
    assert response.status_code == 200
    assert response.json == {"event_id": "ev-1", "last_heartbeat_at": "2026-01-12T08:10:00.000000+00:00"}
    # An older heartbeat does not move it back.
    older = client.post("/api/v1/runs/ev-1/heartbeat", json={"timestamp": "2026-01-12T08:00:00Z"})
    assert older.json["last_heartbeat_at"] == "2026-01-12T08:10:00.000000+00:00"


def test_a_heartbeat_without_a_body_means_now(client):
    make_run(client)
    response = client.post("/api/v1/runs/ev-1/heartbeat")
    assert response.status_code == 200
    assert response.json["last_heartbeat_at"] > "2026-01-12"


def test_heartbeat_errors(client):
    assert client.post("/api/v1/runs/nope/heartbeat", json={}).status_code == 404
    make_run(client)
    assert client.post("/api/v1/runs/ev-1/heartbeat", json={"timestamp": "yesterday"}).status_code == 422
    assert client.post("/api/v1/runs/ev-1/heartbeat", data="{", content_type="application/json").status_code == 400


def test_too_many_events_in_one_request_is_413(env):
    from console.app import create_app
    from console.core.settings import load_settings

    app = create_app(load_settings({**env, "TELEMETRY_MAX_BATCH_ITEMS": "2"}), {"TESTING": True})
    try:
        client = app.test_client()
        make_run(client)
        response = client.post("/api/v1/runs/ev-1/events", json=[{"event_type": "x"}] * 3)
        assert response.status_code == 413
    finally:
        app.extensions["telemetry_db"].dispose()
