"""POST /api/v1/runs: created, duplicate, validation, what lands in the table."""

from __future__ import annotations

import sqlite3

import pytest

from tests.console.conftest import post_run, run_body


def test_new_event_id_answers_201_created(client):
    body = run_body()
    response = client.post("/api/v1/runs", json=body)
    assert response.status_code == 201
    assert response.get_json() == {"status": "created", "event_id": body["event_id"], "run_id": body["run_id"]}


def test_duplicate_event_id_returns_200_duplicate_and_changes_nothing(client):
    body = post_run(client, status="running", error_summary="first")
    again = client.post("/api/v1/runs", json={**body, "status": "failure", "error_summary": "second"})
    assert again.status_code == 200
    answer = again.get_json()
    assert answer["status"] == "duplicate" and answer["event_id"] == body["event_id"] and answer["message"]
    stored = client.get(f"/api/v1/runs/{body['event_id']}").get_json()
    assert stored["status"] == "running" and stored["error_summary"] == "first"
    assert len(client.get("/api/v1/runs").get_json()) == 1


def test_stored_record_has_defaults_and_derived_fields(client):
    body = post_run(client, git_repo="https://github.com/acme/tool.git", git_commit_hash="abc1234")
    record = client.get(f"/api/v1/runs/{body['event_id']}").get_json()
    assert record["status"] == "running"
    assert record["items_discovered"] == record["duration_ms"] == record["api_retry_count"] == 0
    assert record["api_posted"] is False
    assert record["schema_version"] == 7
    assert record["start_time"] == "2026-01-12T10:30:00.000000+00:00"
    assert record["created_at"].endswith("+00:00") and record["updated_at"].endswith("+00:00")
    assert record["commit_url"] == "https://github.com/acme/tool/commit/abc1234"
    assert record["repo_url"] == "https://github.com/acme/tool"
    assert isinstance(record["id"], int)
    for internal in ("last_seen_at", "last_heartbeat_at", "stale_marked_at", "stale_marked_by"):
        assert internal not in record


@pytest.mark.parametrize(("sent", "stored"), [
    ("failed", "failure"), ("completed", "success"), ("succeeded", "success"), ("canceled", "cancelled"),
    ("SUCCESS", "success"), ("timeout", "timeout"), ("partial", "partial"),
])
def test_status_aliases_are_stored_in_the_canon(client, sent, stored):
    body = post_run(client, status=sent)
    assert client.get(f"/api/v1/runs/{body['event_id']}").get_json()["status"] == stored


def test_times_with_offsets_are_stored_in_utc(client):
    body = post_run(client, start_time="2026-01-12T02:30:00-08:00", end_time="2026-01-12T11:00:00.5+01:00",
                    created_at="2026-01-12T10:30:00Z")
    record = client.get(f"/api/v1/runs/{body['event_id']}").get_json()
    assert record["start_time"] == "2026-01-12T10:30:00.000000+00:00"
    assert record["end_time"] == "2026-01-12T10:00:00.500000+00:00"
    assert record["created_at"] == "2026-01-12T10:30:00.000000+00:00"


def test_json_fields_accept_any_value_and_strings_holding_json(client):
    body = post_run(client, metrics_json='{"pages": 3}', context_json=["a", {"b": None}])
    record = client.get(f"/api/v1/runs/{body['event_id']}").get_json()
    assert record["metrics_json"] == {"pages": 3}
    assert record["context_json"] == ["a", {"b": None}]
    plain = post_run(client, metrics_json="not json")
    assert client.get(f"/api/v1/runs/{plain['event_id']}").get_json()["metrics_json"] == "not json"


def test_unknown_fields_are_ignored_and_null_duration_means_zero(client):
    body = post_run(client, record_type="run", updated_at="2026-01-12T10:30:00Z", duration_ms=None)
    assert client.get(f"/api/v1/runs/{body['event_id']}").get_json()["duration_ms"] == 0


def test_git_commit_fields_are_stored_as_sent(client):
    body = post_run(client, git_commit_source="llm", git_commit_author="Bot <b@x>",
                    git_commit_timestamp="2026-01-12T10:30:00-05:00")
    record = client.get(f"/api/v1/runs/{body['event_id']}").get_json()
    assert record["git_commit_source"] == "llm"
    assert record["git_commit_author"] == "Bot <b@x>"
    assert record["git_commit_timestamp"] == "2026-01-12T10:30:00-05:00"


@pytest.mark.parametrize(("change", "field"), [
    ({"event_id": None}, "event_id"),
    ({"agent_name": ""}, "agent_name"),
    ({"start_time": "2026-01-12T10:30:00"}, "start_time"),
    ({"start_time": "yesterday"}, "start_time"),
    ({"status": "exploded"}, "status"),
    ({"items_failed": -1}, "items_failed"),
    ({"duration_ms": -5}, "duration_ms"),
    ({"api_retry_count": -1}, "api_retry_count"),
    ({"git_commit_source": "robot"}, "git_commit_source"),
    ({"git_commit_timestamp": "2026-01-12"}, "git_commit_timestamp"),
    ({"error_details": "bad\u0000byte"}, "error_details"),
    ({"run_id": "lone \ud800 surrogate"}, "run_id"),
])
def test_invalid_fields_answer_422_with_loc_msg_type(client, change, field):
    body = run_body(**change)
    if change.get("event_id", "") is None:
        del body["event_id"]
    response = client.post("/api/v1/runs", json=body)
    assert response.status_code == 422
    detail = response.get_json()["detail"]
    assert any(item["loc"][-1] == field for item in detail), detail
    for item in detail:
        assert set(item) == {"loc", "msg", "type"}
    assert client.get("/api/v1/runs").get_json() == []


def test_one_item_per_bad_field(client):
    response = client.post("/api/v1/runs", json={"event_id": "x", "items_failed": -1, "status": "nope"})
    fields = {item["loc"][-1] for item in response.get_json()["detail"]}
    assert {"run_id", "agent_name", "job_type", "start_time", "items_failed", "status"} <= fields


def test_body_that_is_not_json_is_400_and_wrong_type_is_415(client):
    bad = client.post("/api/v1/runs", data=b"{not json", content_type="application/json")
    assert bad.status_code == 400 and isinstance(bad.get_json()["detail"], str)
    wrong = client.post("/api/v1/runs", data=b"event_id=1", content_type="application/x-www-form-urlencoded")
    assert wrong.status_code == 415 and wrong.get_json()["detail"]


def test_deeply_nested_json_is_422(client):
    deep = "[" * 100 + "]" * 100
    response = client.post("/api/v1/runs", data=f'{{"metrics_json": {deep}}}', content_type="application/json")
    assert response.status_code == 422


def test_body_that_is_not_an_object_is_422(client):
    assert client.post("/api/v1/runs", json=[1, 2]).status_code == 422


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_file_holds_v7_columns_in_fixed_utc_text(client, settings):
    body = post_run(client, status="completed", start_time="2026-01-12T02:30:00-08:00", api_posted=True,
                    metrics_json={"a": 1}, items_succeeded=4)
    conn = sqlite3.connect(settings.db_path)
    row = conn.execute(
        "SELECT status, start_time, created_at, updated_at, metrics_json, api_posted, items_succeeded, "
        "schema_version, last_seen_at FROM agent_runs WHERE event_id = ?", (body["event_id"],)
    ).fetchone()
    conn.close()
    status, start, created, updated, metrics, posted, succeeded, version, last_seen = row
    assert status == "success"
    assert start == "2026-01-12T10:30:00.000000+00:00"
    for value in (created, updated):
        assert len(value) == 32 and value[10] == "T" and value.endswith("+00:00")
    assert metrics == '{"a":1}'
    assert (posted, succeeded, version) == (1, 4, 7)
    assert last_seen == start


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgres_holds_timestamptz(client, db):
    from sqlalchemy import text

    body = post_run(client, start_time="2026-01-12T02:30:00-08:00")
    with db.read() as session:
        kind = session.execute(text(
            "SELECT data_type FROM information_schema.columns WHERE table_name='agent_runs' AND column_name='start_time'"
        )).scalar()
        start = session.execute(text("SELECT start_time FROM agent_runs WHERE event_id=:e"),
                                {"e": body["event_id"]}).scalar()
    assert kind == "timestamp with time zone"
    assert start.utcoffset() is not None and start.isoformat().startswith("2026-01-12T10:30:00")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_file_holds_json_text_and_utc_text_from_both_write_paths(client, settings):
    single = post_run(client, metrics_json="plain text", context_json={"k": "ü"}, end_time="2026-01-12T12:00:00+02:00")
    batch = run_body(metrics_json="plain text", context_json={"k": "ü"}, end_time="2026-01-12T12:00:00+02:00")
    assert client.post("/api/v1/runs/batch", json=[batch]).status_code == 201
    conn = sqlite3.connect(settings.db_path)
    rows = conn.execute("SELECT metrics_json, context_json, end_time FROM agent_runs WHERE event_id IN (?, ?)",
                        (single["event_id"], batch["event_id"])).fetchall()
    conn.close()
    assert rows == [('"plain text"', '{"k":"ü"}', "2026-01-12T10:00:00.000000+00:00")] * 2
