"""POST /api/v1/ingest: spool lines v1, idempotent per line, order-independent."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tests.console.rollup_check import assert_rollups_match

HEAD = {
    "event_id": "ev-1",
    "run_id": "run-1",
    "agent_name": "agent-a",
    "job_type": "crawl",
    "start_time": "2026-01-12T10:00:00Z",
}


def line(kind: str, ts: str, data: dict | None = None, *, id: str | None = None, **head) -> dict:
    return {"v": 1, "id": id or str(uuid.uuid4()), "kind": kind, "ts": ts, **{**HEAD, **head}, "data": data or {}}


def get_run(client, event_id: str = "ev-1") -> dict:
    response = client.get(f"/api/v1/runs/{event_id}")
    assert response.status_code == 200, response.json
    return response.json


def row(db, event_id: str = "ev-1") -> dict:
    with db.read() as session:
        return dict(
            session.execute(sa.text("SELECT * FROM agent_runs WHERE event_id = :e"), {"e": event_id}).mappings().one()
        )


def test_it_creates_updates_and_ends_a_run(client, db):
    lines = [
        line("run_started", "2026-01-12T10:00:00Z", {"status": "running", "host": "box"}),
        line("run_updated", "2026-01-12T10:01:00Z", {"items_discovered": 5}),
        line("event", "2026-01-12T10:02:00Z", {"event_type": "step", "payload": {"n": 1}}),
        line("heartbeat", "2026-01-12T10:03:00Z"),
        line("commit", "2026-01-12T10:04:00Z", {"commit_hash": "abcdef1", "commit_source": "llm"}),
        line("run_ended", "2026-01-12T10:05:00Z", {"status": "completed", "items_succeeded": 4, "duration_ms": 300000}),
    ]
    response = client.post("/api/v1/ingest", json=lines)
    assert response.status_code == 200
    assert response.json == {"accepted": 6, "duplicates": 0, "rejected": []}
    run = get_run(client)
    assert run["status"] == "success"
    assert run["host"] == "box"
    assert run["items_discovered"] == 5 and run["items_succeeded"] == 4
    assert run["git_commit_hash"] == "abcdef1" and run["git_commit_source"] == "llm"
    assert run["end_time"] == "2026-01-12T10:05:00.000000+00:00"
    stored = row(db)
    assert str(stored["last_heartbeat_at"]).startswith("2026-01-12")
    events = client.get("/api/v1/runs/ev-1/events").json
    assert [(e["event_type"], e["payload"]) for e in events] == [("step", {"n": 1})]
    assert_rollups_match(db)


def test_replaying_the_same_lines_changes_nothing(client, db):
    lines = [line("run_started", "2026-01-12T10:00:00Z"), line("event", "2026-01-12T10:01:00Z", {"event_type": "x"})]
    assert client.post("/api/v1/ingest", json=lines).json["accepted"] == 2
    before = row(db)
    again = client.post("/api/v1/ingest", json=lines + lines)
    assert again.json == {"accepted": 0, "duplicates": 4, "rejected": []}
    assert row(db) == before
    assert len(client.get("/api/v1/runs/ev-1/events").json) == 1
    assert_rollups_match(db)


def test_a_repeated_id_within_one_batch_is_a_duplicate(client):
    first = line("run_started", "2026-01-12T10:00:00Z", id="same")
    response = client.post("/api/v1/ingest", json=[first, dict(first)])
    assert response.json == {"accepted": 1, "duplicates": 1, "rejected": []}


def test_an_end_that_arrives_before_its_start_still_ends_the_run(client, db):
    end = line("run_ended", "2026-01-12T10:05:00Z", {"status": "failed", "error_summary": "boom"})
    assert client.post("/api/v1/ingest", json=[end]).json["accepted"] == 1
    assert get_run(client)["status"] == "failure"
    start = line("run_started", "2026-01-12T10:00:00Z", {"status": "running", "host": "late-host"})
    assert client.post("/api/v1/ingest", json=[start]).json["accepted"] == 1
    run = get_run(client)
    assert run["status"] == "failure"
    assert run["error_summary"] == "boom"
    assert run["host"] == "late-host"  # empty fields are still filled in
    assert_rollups_match(db)


def test_lines_in_one_batch_apply_in_timestamp_order(client):
    lines = [
        line("run_ended", "2026-01-12T10:05:00Z", {"status": "success"}),
        line("run_started", "2026-01-12T10:00:00Z", {"status": "running"}),
    ]
    client.post("/api/v1/ingest", json=lines)
    assert get_run(client)["status"] == "success"


@pytest.mark.parametrize("kind", ["event", "heartbeat", "run_updated", "commit"])
def test_any_line_can_create_its_run(client, kind):
    data = {"event": {"event_type": "x"}, "commit": {"commit_hash": "1234567", "commit_source": "ci"}}.get(kind, {})
    response = client.post("/api/v1/ingest", json=[line(kind, "2026-01-12T10:01:00Z", data)])
    assert response.json["accepted"] == 1
    run = get_run(client)
    assert run["status"] == "running" and run["agent_name"] == "agent-a"


def test_bad_lines_are_rejected_one_by_one(client):
    good = line("run_started", "2026-01-12T10:00:00Z")
    lines = [
        good,
        {**line("heartbeat", "2026-01-12T10:00:00Z"), "v": 2},
        {**line("heartbeat", "2026-01-12T10:00:00Z"), "kind": "telepathy"},
        {**line("heartbeat", "2026-01-12T10:00:00Z"), "ts": "2026-01-12T10:00:00"},
        line("run_updated", "2026-01-12T10:00:00Z", {"items_failed": -1}),
        "not an object",
        {**line("heartbeat", "2026-01-12T10:00:00Z"), "event_id": None},
    ]
    response = client.post("/api/v1/ingest", json=lines)
    assert response.status_code == 200
    assert response.json["accepted"] == 1
    rejected = response.json["rejected"]
    assert [r["index"] for r in rejected] == [1, 2, 3, 4, 5, 6]
    assert rejected[0]["id"] == lines[1]["id"]
    assert rejected[4]["id"] is None
    assert all(r["detail"] for r in rejected)


def test_the_envelope_must_be_an_array(client):
    response = client.post("/api/v1/ingest", json={"lines": []})
    assert response.status_code == 422
    assert isinstance(response.json["detail"], list)


def test_an_empty_array_is_fine(client):
    assert client.post("/api/v1/ingest", json=[]).json == {"accepted": 0, "duplicates": 0, "rejected": []}


def test_too_many_lines_is_413(make_app):
    client = make_app(TELEMETRY_MAX_BATCH_ITEMS="3").test_client()
    lines = [line("heartbeat", "2026-01-12T10:00:00Z") for _ in range(4)]
    response = client.post("/api/v1/ingest", json=lines)
    assert response.status_code == 413
    assert "limit is 3" in response.json["detail"]


def test_not_json_is_400_and_wrong_type_is_415(client):
    assert client.post("/api/v1/ingest", data="[", content_type="application/json").status_code == 400
    assert client.post("/api/v1/ingest", data="[]", content_type="text/plain").status_code == 415


def test_ingest_counts_are_kept_in_the_database(client, db):
    client.post("/api/v1/ingest", json=[line("heartbeat", "2026-01-12T10:00:00Z", id="a"), {"v": 9}])
    client.post("/api/v1/ingest", json=[line("heartbeat", "2026-01-12T10:00:00Z", id="a")])
    with db.read() as session:
        counts = dict(session.execute(sa.text("SELECT outcome, records FROM ingest_counts")).all())
    assert counts == {"accepted": 1, "duplicate": 1, "rejected": 1}


def test_a_retried_transaction_applies_a_prepared_batch_once(db):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from console.domain.ingest import ingest, prepare
    from console.domain.spool_lines import parse_lines

    lines = [
        line("run_started", "2026-01-12T10:00:00Z"),
        line("run_ended", "2026-01-12T10:05:00Z", {"status": "success", "duration_ms": 5}),
    ]
    prepared = prepare(parse_lines(lines), dialect=db.dialect)
    attempts = []

    def work(session):
        result = ingest(session, prepared=prepared)
        if not attempts:
            attempts.append(1)
            raise OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))
        return result

    result = db.write(work)
    assert attempts and result.accepted == 2
    assert_rollups_match(db)


def test_a_batch_mixing_new_stored_and_seen_lines(client, db):
    seen = line("run_started", "2026-01-12T10:00:00Z", event_id="old")
    client.post("/api/v1/ingest", json=[seen])
    batch = [
        seen,  # seen before
        line("run_ended", "2026-01-12T10:05:00Z", {"status": "partial"}, event_id="old"),  # stored run
        line("run_started", "2026-01-12T10:00:00Z", event_id="new"),
        line("event", "2026-01-12T10:01:00Z", {"event_type": "e"}, event_id="new"),
    ]
    assert client.post("/api/v1/ingest", json=batch).json == {"accepted": 3, "duplicates": 1, "rejected": []}
    assert get_run(client, "old")["status"] == "partial"
    assert get_run(client, "new")["status"] == "running"
    assert len(client.get("/api/v1/runs/new/events").json) == 1
    assert_rollups_match(db)


def test_concurrent_replays_of_one_batch_apply_each_line_once(db):
    import threading

    from console.domain.ingest import ingest, prepare
    from console.domain.spool_lines import parse_lines

    lines = []
    for i in range(40):
        lines.append(line("run_started", "2026-01-12T10:00:00Z", event_id=f"c{i}", run_id=f"c{i}"))
        lines.append(line("event", "2026-01-12T10:01:00Z", {"event_type": "x"}, event_id=f"c{i}", run_id=f"c{i}"))
        lines.append(line("run_ended", "2026-01-12T10:02:00Z", {"status": "success"}, event_id=f"c{i}", run_id=f"c{i}"))
    barrier = threading.Barrier(4)
    results, errors = [], []

    def send():
        try:
            prepared = prepare(parse_lines(lines), dialect=db.dialect)
            barrier.wait()
            results.append(db.write(lambda session: ingest(session, prepared=prepared)))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(r.accepted for r in results) == len(lines)
    assert sum(r.duplicates for r in results) == 3 * len(lines)
    with db.read() as session:
        import sqlalchemy as sa

        assert session.execute(sa.text("SELECT count(*) FROM agent_runs")).scalar() == 40
        assert session.execute(sa.text("SELECT count(*) FROM run_events")).scalar() == 40
        assert session.execute(sa.text("SELECT count(*) FROM agent_runs WHERE status = 'success'")).scalar() == 40
    assert_rollups_match(db)


def test_a_run_updated_with_a_final_status_ends_the_run(client, db):
    lines = [
        line("run_started", "2026-01-12T10:00:00Z"),
        line("run_updated", "2026-01-12T10:03:00Z", {"status": "canceled", "items_skipped": 2}),
    ]
    client.post("/api/v1/ingest", json=lines)
    run = get_run(client)
    assert run["status"] == "cancelled" and run["items_skipped"] == 2
    assert run["end_time"] == "2026-01-12T10:03:00.000000+00:00"
    assert run["duration_ms"] == 180000  # from start and end when the record gives none
    assert_rollups_match(db)


def test_bad_data_of_each_kind_is_rejected_by_line(client):
    lines = [
        line("commit", "2026-01-12T10:00:00Z", {"commit_hash": "abc", "commit_source": "ci"}),
        line("commit", "2026-01-12T10:00:00Z", {"commit_hash": "abcdef12", "commit_source": "robot"}),
        line("event", "2026-01-12T10:00:00Z", {"payload": {"no": "type"}}),
        line("run_ended", "2026-01-12T10:00:00Z", {"status": "exploded"}),
        line("run_updated", "2026-01-12T10:00:00Z", {"error_summary": "nul \u0000 byte"}),
        {**line("heartbeat", "2026-01-12T10:00:00Z"), "data": ["not", "an", "object"]},
    ]
    response = client.post("/api/v1/ingest", json=lines)
    assert response.status_code == 200
    assert response.json["accepted"] == 0
    assert [r["index"] for r in response.json["rejected"]] == [0, 1, 2, 3, 4, 5]
    for rejection in response.json["rejected"]:
        assert set(rejection) == {"index", "id", "detail"}
    assert client.get("/api/v1/runs/ev-1").status_code == 404


def test_a_body_over_the_byte_limit_is_413(make_app):
    client = make_app(TELEMETRY_MAX_BODY_BYTES="2048").test_client()
    lines = [line("heartbeat", "2026-01-12T10:00:00Z") for _ in range(20)]
    response = client.post("/api/v1/ingest", json=lines)
    assert response.status_code == 413
    assert "detail" in response.json


def test_ingest_needs_the_token_when_auth_is_on(make_app):
    client = make_app(TELEMETRY_API_AUTH_ENABLED="true", TELEMETRY_API_AUTH_TOKEN="s3cret").test_client()
    body = [line("heartbeat", "2026-01-12T10:00:00Z")]
    denied = client.post("/api/v1/ingest", json=body)
    assert denied.status_code == 401 and denied.headers["WWW-Authenticate"].startswith("Bearer")
    allowed = client.post("/api/v1/ingest", json=body, headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 200 and allowed.json["accepted"] == 1


def test_new_lines_of_stored_runs_beside_new_runs_and_fully_seen_runs(client, db):
    seen_b = line("run_started", "2026-01-12T09:00:00Z", event_id="b")
    client.post("/api/v1/ingest", json=[line("run_started", "2026-01-12T09:00:00Z", event_id="a"), seen_b])
    # Every line new, one of them for a stored run: it is folded onto the stored row.
    only_new = [line("run_updated", "2026-01-12T09:01:00Z", {"host": "h1"}, event_id="a")]
    assert client.post("/api/v1/ingest", json=only_new).json == {"accepted": 1, "duplicates": 0, "rejected": []}
    batch = [
        line("run_ended", "2026-01-12T09:05:00Z", {"status": "failure"}, event_id="a"),  # stored run, new line
        seen_b,  # a run whose every line was seen
        line("run_ended", "2026-01-12T09:06:00Z", {"duration_ms": 60000}, event_id="c"),  # a new run
    ]
    assert client.post("/api/v1/ingest", json=batch).json == {"accepted": 2, "duplicates": 1, "rejected": []}
    a, b, c = (get_run(client, e) for e in "abc")
    assert (a["status"], a["host"]) == ("failure", "h1")
    assert b["status"] == "running"
    assert (c["status"], c["duration_ms"]) == ("success", 60000)
    assert_rollups_match(db)
