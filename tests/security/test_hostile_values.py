"""Hostile values in every field of every write route: a 422 for that record, never a 5xx.

Each value is sent as raw JSON text (NaN, 1e999 and a 5000-digit integer cannot be
written by `json.dumps`), on SQLite and on PostgreSQL (the `backend` fixture), and
the store is compared whole before and after: a refused record changes nothing.
The limits are console/domain/bounded_json.py's, described in docs/reliability.md.
"""

from __future__ import annotations

import json
import uuid

import pytest

from console.domain.bounded_json import MAX_FIELD_DEPTH, MAX_INT_DIGITS, MAX_JSON_DEPTH, MAX_KEY_CHARS
from tests.security.conftest import dump_store, run_body

SLOT = "__hostile__"
BRACKETS_3000 = "[" * 3000 + "]" * 3000


def quoted(text: str) -> str:
    return json.dumps(text)


# name -> the value as raw JSON text. Each is refused wherever it lands in a field the console stores.
ANYWHERE = {
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "1e999": "1e999",
    "-1e999": "-1e999",
    "5000-digit integer": "9" * 5000,
    "over-long integer": "1" * (MAX_INT_DIGITS + 1),
    "a float past a float, written long": "1" + "0" * 400 + ".5",
    "NUL": '"a\\u0000b"',
    "lone surrogate": '"a\\ud800b"',
    "lone low surrogate": '"\\udfff"',
}
# ... and these in a JSON field (metrics, context, event payloads), also as a string holding JSON.
IN_JSON = {
    "[ x3000 in a string": quoted(BRACKETS_3000),
    "[ x3000": BRACKETS_3000,
    "too deep by one": "[" * (MAX_FIELD_DEPTH + 1) + "]" * (MAX_FIELD_DEPTH + 1),
    "past the body's nesting limit": "[" * (MAX_JSON_DEPTH + 10) + "]" * (MAX_JSON_DEPTH + 10),
    "too deep in a string": quoted("[" * (MAX_FIELD_DEPTH + 1) + "]" * (MAX_FIELD_DEPTH + 1)),
    "NaN in a string": quoted("NaN"),
    "NaN inside JSON in a string": quoted('{"loss": NaN}'),
    "Infinity inside JSON in a string": quoted("[1, Infinity]"),
    "1e999 in a string": quoted('{"x": 1e999}'),
    "5000-digit integer in a string": quoted("9" * 5000),
    "NUL inside JSON in a string": quoted('{"a": "\\u0000"}'),
    "surrogate inside JSON in a string": quoted('["\\ud800"]'),
    "long key": '{"' + "k" * (MAX_KEY_CHARS + 1) + '": 1}',
    "long key in a string": quoted(json.dumps({"k" * (MAX_KEY_CHARS + 1): 1})),
    "NUL in a key": '{"a\\u0000": 1}',
    "surrogate in a key": '{"\\ud800": 1}',
    "nested NaN": '{"a": [1, {"b": NaN}]}',
    "nested huge integer": '{"a": [' + "7" * 5000 + "]}",
}
JSON_CASES = {**ANYWHERE, **IN_JSON}
TEXT_CASES = ANYWHERE
NUMBER_CASES = {k: v for k, v in ANYWHERE.items() if "NUL" not in k and "surrogate" not in k}


def with_value(document, raw: str) -> bytes:
    """`document` as JSON with the string SLOT replaced by the raw JSON text `raw`."""
    text = json.dumps(document)
    assert text.count(quoted(SLOT)) == 1
    return text.replace(quoted(SLOT), raw).encode()


def spool_line(kind: str, event_id: str, data: dict | None = None, **head) -> dict:
    line = {"v": 1, "id": str(uuid.uuid4()), "kind": kind, "ts": "2026-01-12T10:31:00Z", "event_id": event_id,
            "run_id": "r", "agent_name": "a", "job_type": "j", "start_time": "2026-01-12T10:30:00Z",
            "data": data if data is not None else {}}
    line.update(head)
    return line


def single_record_routes(seeded: list[str]) -> list[tuple[str, str, str, dict, dict]]:
    """(case group, method, path, document with SLOT, cases) for the routes that take one record."""
    run, events = seeded[0], f"/api/v1/runs/{seeded[0]}/events"
    return [
        ("create metrics_json", "POST", "/api/v1/runs", run_body(metrics_json=SLOT), JSON_CASES),
        ("create context_json", "POST", "/api/v1/runs", run_body(context_json=SLOT), JSON_CASES),
        ("create text", "POST", "/api/v1/runs", run_body(error_summary=SLOT), TEXT_CASES),
        ("create identifier", "POST", "/api/v1/runs", run_body(agent_name=SLOT), TEXT_CASES),
        ("create counter", "POST", "/api/v1/runs", run_body(items_failed=SLOT), NUMBER_CASES),
        ("create time", "POST", "/api/v1/runs", run_body(start_time=SLOT), TEXT_CASES),
        ("patch metrics_json", "PATCH", f"/api/v1/runs/{run}", {"metrics_json": SLOT}, JSON_CASES),
        ("patch context_json", "PATCH", f"/api/v1/runs/{run}", {"context_json": SLOT}, JSON_CASES),
        ("patch text", "PATCH", f"/api/v1/runs/{run}", {"output_summary": SLOT}, TEXT_CASES),
        ("patch counter", "PATCH", f"/api/v1/runs/{run}", {"duration_ms": SLOT}, NUMBER_CASES),
        ("event payload", "POST", events, [{"event_type": "step", "payload": SLOT}], JSON_CASES),
        ("event type", "POST", events, [{"event_type": SLOT}], TEXT_CASES),
        ("event id", "POST", events, {"event_type": "step", "id": SLOT}, TEXT_CASES),
        ("heartbeat", "POST", f"/api/v1/runs/{run}/heartbeat", {"timestamp": SLOT}, TEXT_CASES),
        ("commit author", "POST", f"/api/v1/runs/{run}/associate-commit",
         {"commit_hash": "abcdef1", "commit_source": "llm", "commit_author": SLOT}, TEXT_CASES),
        ("mark-failed reason", "POST", "/api/v1/runs/mark-failed", {"event_ids": [run], "reason": SLOT}, TEXT_CASES),
        ("mark-failed id", "POST", "/api/v1/runs/mark-failed", {"event_ids": [SLOT]}, TEXT_CASES),
        ("mark-failed minutes", "POST", "/api/v1/runs/mark-failed", {"older_than_minutes": SLOT}, NUMBER_CASES),
    ]


def ingest_lines(event_id: str) -> list[tuple[str, dict, dict]]:
    """(case group, spool line with SLOT, cases) for every line kind."""
    return [
        (f"{kind} metrics_json", spool_line(kind, event_id, {"metrics_json": SLOT}), JSON_CASES)
        for kind in ("run_started", "run_updated", "run_ended")
    ] + [
        ("run_updated context_json", spool_line("run_updated", event_id, {"context_json": SLOT}), JSON_CASES),
        ("run_started text", spool_line("run_started", event_id, {"host": SLOT}), TEXT_CASES),
        ("run_ended counter", spool_line("run_ended", event_id, {"items_succeeded": SLOT}), NUMBER_CASES),
        ("event payload", spool_line("event", event_id, {"event_type": "e", "payload": SLOT}), JSON_CASES),
        ("event type", spool_line("event", event_id, {"event_type": SLOT}), TEXT_CASES),
        ("commit author", spool_line("commit", event_id, {"commit_hash": "abcdef1", "commit_source": "llm",
                                                          "commit_author": SLOT}), TEXT_CASES),
        ("heartbeat agent_name", spool_line("heartbeat", event_id, agent_name=SLOT), TEXT_CASES),
        ("heartbeat ts", spool_line("heartbeat", event_id, ts=SLOT), TEXT_CASES),
        ("line id", spool_line("heartbeat", event_id, id=SLOT), TEXT_CASES),
        ("line version", spool_line("heartbeat", event_id, v=SLOT), NUMBER_CASES),
    ]


def assert_422(resp, case):
    assert resp.status_code == 422, (case, resp.status_code, resp.get_data(as_text=True)[:300])
    assert resp.get_json()["detail"], case


def test_every_hostile_value_in_a_single_record_route_is_a_422_and_stores_nothing(client, db, seeded):
    before = dump_store(db)
    for group, method, path, document, cases in single_record_routes(seeded):
        for name, raw in cases.items():
            resp = client.open(path, method=method, data=with_value(document, raw), content_type="application/json")
            assert_422(resp, (group, name))
    assert dump_store(db) == before


def test_every_hostile_value_in_a_batch_refuses_that_run_only(client, db, seeded):
    before = dump_store(db)
    good = []
    for field, cases in (("metrics_json", JSON_CASES), ("context_json", JSON_CASES), ("product", TEXT_CASES),
                         ("run_id", TEXT_CASES), ("items_skipped", NUMBER_CASES)):
        for name, raw in cases.items():
            ok = run_body(metrics_json={"fine": 1})
            body = with_value([run_body(**{field: SLOT}), ok], raw)
            resp = client.post("/api/v1/runs/batch", data=body, content_type="application/json")
            if name.startswith("[ x3000") and "string" not in name:
                assert_422(resp, (field, name))  # past the parser's depth: the whole body is refused
                continue
            assert resp.status_code == 201, (field, name, resp.get_json())
            answer = resp.get_json()
            assert answer["inserted"] == 1 and [e["index"] for e in answer["errors"]] == [0], (field, name, answer)
            good.append(ok["event_id"])
    after = dump_store(db)
    stored = {row[1] for row in after["agent_runs"]} - {row[1] for row in before["agent_runs"]}
    assert stored == set(good)  # the good runs of each batch, and nothing of the hostile ones


def test_every_hostile_value_in_any_line_kind_rejects_that_line_only(client, db, seeded):
    before = dump_store(db)
    target = str(uuid.uuid4())
    for group, document, cases in ingest_lines(target):
        for name, raw in cases.items():
            good = spool_line("event", seeded[0], {"event_type": "fine", "payload": {"n": 1}})
            body = with_value([good, document], raw)
            resp = client.post("/api/v1/ingest", data=body, content_type="application/json")
            if name.startswith("[ x3000") and "string" not in name:
                assert_422(resp, (group, name))
                continue
            assert resp.status_code == 200, (group, name, resp.get_data(as_text=True)[:300])
            answer = resp.get_json()
            assert answer["accepted"] == 1, (group, name, answer)
            assert [r["index"] for r in answer["rejected"]] == [1] and answer["rejected"][0]["detail"], answer
    after = dump_store(db)
    assert not [row for row in after["agent_runs"] if target in row]  # no hostile line created its run
    new_events = [row for row in after["run_events"] if row not in before["run_events"]]
    assert new_events and all("fine" in row for row in new_events)  # the good line of each request


@pytest.mark.parametrize("path", ["/api/v1/runs", "/api/v1/runs/batch", "/api/v1/ingest"])
def test_regression_metrics_json_string_of_3000_brackets_is_a_422(path, client, db):
    """Was a 500: json.loads raised RecursionError and only ValueError was caught."""
    before = dump_store(db)
    record = run_body(metrics_json=BRACKETS_3000)
    if path == "/api/v1/runs":
        resp = client.post(path, json=record)
        assert_422(resp, path)
        assert "nested deeper" in json.dumps(resp.get_json())
    elif path == "/api/v1/runs/batch":
        resp = client.post(path, json=[record])
        assert resp.status_code == 201 and resp.get_json()["inserted"] == 0
        assert "nested deeper" in json.dumps(resp.get_json()["errors"])
    else:
        resp = client.post(path, json=[spool_line("run_started", record["event_id"], {"metrics_json": BRACKETS_3000})])
        assert resp.status_code == 200 and resp.get_json()["accepted"] == 0
        assert "nested deeper" in json.dumps(resp.get_json()["rejected"])
    assert dump_store(db) == before


def test_values_just_inside_the_limits_are_stored_as_sent(client):
    deepest = json.loads("[" * MAX_FIELD_DEPTH + "]" * MAX_FIELD_DEPTH)
    context = {"k" * MAX_KEY_CHARS: int("9" * MAX_INT_DIGITS), "negative": -int("9" * MAX_INT_DIGITS),
               "small": 0.5e-3, "long float": float("0." + "1" * 1000), "text": "NaN"}
    for metrics_json, metrics in ((deepest, deepest), (json.dumps(deepest), deepest), ("[1, 2", "[1, 2")):
        body = run_body(metrics_json=metrics_json, context_json=context)
        resp = client.post("/api/v1/runs", json=body)
        assert resp.status_code == 201, resp.get_json()
        stored = client.get(f"/api/v1/runs/{body['event_id']}").get_json()
        assert stored["metrics_json"] == metrics  # text that is not JSON stays text
        assert stored["context_json"] == context
