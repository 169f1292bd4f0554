"""Every write that ends a run `failure` or `timeout` bumps the change marker once, in its transaction;
writes that end no run badly leave it alone."""

from __future__ import annotations

import uuid

from console.store import alert_marker


def marker(db) -> int:
    with db.read() as session:
        return alert_marker.read(session)


def run(status: str, **fields) -> dict:
    event_id = str(uuid.uuid4())
    body = {"event_id": event_id, "run_id": event_id[:8], "agent_name": "a", "job_type": "j", "status": status,
            "start_time": "2026-01-01T00:00:00Z", **fields}
    if status != "running":
        body["end_time"] = "2026-01-01T00:00:01Z"
    return body


def test_each_write_path_bumps_the_marker_only_for_bad_ends(client, db):
    start = marker(db)
    assert client.post("/api/v1/runs", json=run("success")).status_code == 201
    assert client.post("/api/v1/runs/batch", json=[run("success"), run("running")]).status_code == 201
    assert marker(db) == start

    assert client.post("/api/v1/runs", json=run("failure")).status_code == 201
    assert marker(db) == start + 1
    assert client.post("/api/v1/runs/batch", json=[run("timeout"), run("failure"), run("success")]).status_code == 201
    assert marker(db) == start + 2  # once per transaction

    running = run("running")
    client.post("/api/v1/runs", json=running)
    assert client.patch(f"/api/v1/runs/{running['event_id']}", json={"output_summary": "x"}).status_code == 200
    assert marker(db) == start + 2
    assert client.patch(f"/api/v1/runs/{running['event_id']}", json={"status": "timeout"}).status_code == 200
    assert marker(db) == start + 3

    stuck = run("running")
    client.post("/api/v1/runs", json=stuck)
    answer = client.post("/api/v1/runs/mark-failed", json={"event_ids": [stuck["event_id"]]})
    assert answer.get_json()["count"] == 1
    assert marker(db) == start + 4

    line = {"v": 1, "id": str(uuid.uuid4()), "kind": "run_ended", "ts": "2026-01-01T00:00:05Z",
            "event_id": str(uuid.uuid4()), "run_id": "ingested", "agent_name": "a", "job_type": "j",
            "start_time": "2026-01-01T00:00:00Z", "data": {"status": "failure"}}
    answer = client.post("/api/v1/ingest", json=[line])
    assert answer.status_code == 200 and answer.get_json()["accepted"] == 1, answer.get_json()
    assert marker(db) == start + 5

    assert client.post("/api/v1/ingest", json=[line]).get_json()["duplicates"] == 1  # a replay: nothing new
    assert marker(db) == start + 5


def test_the_marker_comes_back_when_its_row_is_gone(client, db):
    from console.store.alert_marker import alert_state

    db.write(lambda s: s.execute(alert_state.delete()))
    assert marker(db) == 0
    assert client.post("/api/v1/runs", json=run("failure")).status_code == 201
    assert marker(db) == 1
