"""POST /api/v1/runs/batch: both shapes, partial success, duplicates, limits."""

from __future__ import annotations

from tests.console.conftest import post_run, run_body


def test_bare_array_is_stored_and_answers_201_created(client):
    bodies = [run_body() for _ in range(3)]
    response = client.post("/api/v1/runs/batch", json=bodies)
    assert response.status_code == 201
    assert response.get_json() == {"status": "created", "inserted": 3, "duplicates": 0, "errors": [], "total": 3}
    assert len(client.get("/api/v1/runs").get_json()) == 3


def test_runs_envelope_is_accepted(client):
    response = client.post("/api/v1/runs/batch", json={"runs": [run_body(), run_body()]})
    assert response.status_code == 201
    assert response.get_json()["inserted"] == 2


def test_duplicates_stored_and_within_the_batch_are_counted_not_errors(client):
    stored = post_run(client)
    repeated = run_body()
    response = client.post("/api/v1/runs/batch", json=[stored, repeated, {**repeated, "run_id": "other"}, run_body()])
    body = response.get_json()
    assert response.status_code == 201
    assert (body["status"], body["inserted"], body["duplicates"], body["errors"], body["total"]) == (
        "created", 2, 2, [], 4)
    record = client.get(f"/api/v1/runs/{repeated['event_id']}").get_json()
    assert record["run_id"] == repeated["run_id"]  # the first of the repeats wins


def test_invalid_items_are_listed_and_valid_ones_stored(client):
    good = run_body(status="failed")
    bad = run_body(items_failed=-1)
    response = client.post("/api/v1/runs/batch", json=[good, bad, "not an object", {"run_id": "x"}])
    body = response.get_json()
    assert response.status_code == 201
    assert body["status"] == "partial" and body["inserted"] == 1 and body["total"] == 4
    assert [e["index"] for e in body["errors"]] == [1, 2, 3]
    assert body["errors"][0]["event_id"] == bad["event_id"]
    assert body["errors"][1]["event_id"] is None
    assert any(item["loc"] == ["items_failed"] for item in body["errors"][0]["detail"])
    for error in body["errors"]:
        for item in error["detail"]:
            assert set(item) == {"loc", "msg", "type"}
    assert client.get(f"/api/v1/runs/{good['event_id']}").get_json()["status"] == "failure"
    assert client.get(f"/api/v1/runs/{bad['event_id']}").status_code == 404


def test_empty_batch_is_created_with_nothing(client):
    response = client.post("/api/v1/runs/batch", json=[])
    assert response.status_code == 201
    assert response.get_json() == {"status": "created", "inserted": 0, "duplicates": 0, "errors": [], "total": 0}


def test_body_of_neither_shape_is_422(client):
    for body in ('{"items": []}', '{"runs": "x"}', '"runs"', "3", "null"):
        response = client.post("/api/v1/runs/batch", data=body, content_type="application/json")
        assert response.status_code == 422, body
        assert all(set(item) == {"loc", "msg", "type"} for item in response.get_json()["detail"])


def test_more_items_than_the_maximum_is_413(make_app):
    client = make_app(TELEMETRY_MAX_BATCH_ITEMS="3").test_client()
    response = client.post("/api/v1/runs/batch", json=[run_body() for _ in range(4)])
    assert response.status_code == 413
    assert "3" in response.get_json()["detail"]
    assert client.get("/api/v1/runs").get_json() == []
    assert client.post("/api/v1/runs/batch", json={"runs": [run_body() for _ in range(3)]}).status_code == 201


def test_each_record_of_a_batch_reads_back_as_its_single_post_does(client):
    # Plain records (the hand check) and unusual ones (the model: aliases, times as numbers' text,
    # JSON in a string, a boolean flag) side by side; each sets other optional fields, so a column
    # one record sets and the others leave NULL is stored for that record alone.
    records = [
        run_body(status="success", host="h1", metrics_json={"pages": 3}, items_failed=None),
        run_body(status="Failed", environment="prod", error_summary="boom", context_json='{"a": [1, 2]}'),
        run_body(status="running", api_posted=True, git_commit_source="ci", parent_run_id="p1",
                 start_time="2026-01-12T10:00:00-05:00", created_at="2026-01-12T16:00:00Z"),
        run_body(end_time="2026-01-12T10:00:01.5+00:00", duration_ms=1500, unknown_field={"x": [1]}),
    ]
    singles = [{**record, "event_id": record["event_id"] + "-single"} for record in records]
    assert client.post("/api/v1/runs/batch", json=records).get_json()["inserted"] == len(records)
    for single in singles:
        assert client.post("/api/v1/runs", json=single).status_code == 201
    for record, single in zip(records, singles, strict=True):
        batch_answer = client.get(f"/api/v1/runs/{record['event_id']}").get_json()
        single_answer = client.get(f"/api/v1/runs/{single['event_id']}").get_json()
        for answer in (batch_answer, single_answer):
            for volatile in ("id", "event_id", "created_at", "updated_at"):
                answer.pop(volatile)
        if "created_at" in record:
            assert client.get(f"/api/v1/runs/{record['event_id']}").get_json()["created_at"].startswith("2026-01-12T16:00:00")
        assert batch_answer == single_answer
