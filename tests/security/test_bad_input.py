"""Bad input: a 4xx with a clear `detail`, and nothing already stored changes.

Deep nesting, invalid UTF-8, wrong content types, absurd limits, negative counters,
NUL bytes, lone surrogates, bodies that are not JSON; long fields stored verbatim
up to the documented limit (1,000,000 characters) and refused above it; an 11 MiB
body answered 413 through real gunicorn.
"""

from __future__ import annotations

import json
import socket

import pytest
import requests

from console.domain.validation import MAX_TEXT_CHARS
from tests.security.conftest import dump_store, run_body

DEEP = "[" * 200 + "]" * 200
WRITES = [
    ("POST", "/api/v1/runs"),
    ("POST", "/api/v1/runs/batch"),
    ("POST", "/api/v1/ingest"),
    ("PATCH", "/api/v1/runs/{id}"),
    ("POST", "/api/v1/runs/{id}/associate-commit"),
    ("POST", "/api/v1/runs/{id}/events"),
    ("POST", "/api/v1/runs/{id}/heartbeat"),
    ("POST", "/api/v1/runs/mark-failed"),
]


def assert_clear_4xx(resp, *allowed: int, case: str = ""):
    assert 400 <= resp.status_code < 500, (case, resp.status_code, resp.get_data(as_text=True)[:500])
    if allowed:
        assert resp.status_code in allowed, (case, resp.status_code, resp.get_json())
    assert resp.mimetype == "application/json"
    detail = resp.get_json()["detail"]
    assert detail, "an empty detail explains nothing"
    if isinstance(detail, list):
        assert all(set(item) == {"loc", "msg", "type"} for item in detail), detail
    text = json.dumps(detail)
    assert "Traceback" not in text and len(text) < 20_000  # no stack, no echo of a huge input


def raw_bodies() -> list[tuple[str, bytes, str, tuple[int, ...]]]:
    """(name, body, content type, allowed statuses) for bodies no endpoint may store."""
    return [
        ("not json", b"this is not json", "application/json", (400,)),
        ("empty", b"", "application/json", (400, 422)),
        ("invalid utf-8", b'{"agent_name": "\xff\xfe\xfa"}', "application/json", (400, 422)),
        ("truncated", b'{"event_id": "x", ', "application/json", (400,)),
        ("wrong content type", json.dumps(run_body()).encode(), "text/plain", (415,)),
        ("form content type", b"event_id=x&run_id=y", "application/x-www-form-urlencoded", (415,)),
        ("NaN", b'{"items_failed": NaN}', "application/json", (400, 422)),
        ("huge number", b'{"items_failed": ' + b"9" * 5000 + b"}", "application/json", (400, 422)),
        ("NUL in a string", json.dumps(run_body(agent_name="a\u0000b")).encode(), "application/json", (422,)),
        ("escaped NUL", json.dumps(run_body(job_type="x")).replace('"x"', '"a\\u0000b"').encode(),
         "application/json", (422,)),
        ("lone surrogate", json.dumps(run_body(job_type="x")).replace('"x"', '"\\ud800"').encode(),
         "application/json", (422,)),
    ]


@pytest.mark.parametrize("method,path", WRITES)
def test_malformed_bodies_are_a_clear_4xx_on_every_write_and_change_nothing(method, path, client, db, seeded):
    before = dump_store(db)
    for name, body, ctype, allowed in raw_bodies():
        if path.endswith("/heartbeat") and name in RUN_SHAPED + ("NaN", "huge number", "empty"):
            continue  # a heartbeat's body is optional and ignores unknown fields
        resp = client.open(path.format(id=seeded[0]), method=method, data=body, content_type=ctype)
        if method == "PATCH" and name in RUN_SHAPED:
            allowed = (400, 422)  # a PATCH ignores the create-only fields: "no field to update"
        assert_clear_4xx(resp, *allowed, case=name)
    assert dump_store(db) == before


DEEP_BODIES = {"deep array": DEEP, "deep object": '{"a":' * 100 + "1" + "}" * 100,
               "very deep": "[" * 100_000 + "]" * 100_000}


@pytest.mark.parametrize("method,path", WRITES)
def test_deeply_nested_bodies_never_fail_the_server_or_store_anything(method, path, client, db, seeded):
    before = dump_store(db)
    for name, body in DEEP_BODIES.items():
        resp = client.open(path.format(id=seeded[0]), method=method, data=body, content_type="application/json")
        assert resp.status_code < 500, (name, resp.status_code)
        if resp.status_code in (200, 201) and not path.endswith("/heartbeat"):
            answer = resp.get_json()  # judged item by item: nothing stored
            assert answer.get("inserted", answer.get("accepted")) == 0, (name, answer)
    if not path.endswith("/heartbeat"):  # a heartbeat ignoring {"a": {...}} still records a sign of life
        assert dump_store(db) == before


RUN_SHAPED = ("NUL in a string", "escaped NUL", "lone surrogate")


@pytest.mark.parametrize("method,path", [w for w in WRITES if w[1].endswith(("batch", "ingest", "heartbeat"))
                                         or w[0] == "PATCH"])
def test_a_body_nested_deeper_than_64_levels_is_a_422(method, path, client, seeded):
    for body in (DEEP, DEEP_BODIES["deep object"]):
        resp = client.open(path.format(id=seeded[0]), method=method, data=body, content_type="application/json")
        if body == DEEP and path.endswith(("batch", "ingest")):
            # An array's items are judged one by one: the deep item is refused alone.
            assert resp.status_code in (200, 201), resp.get_json()
            answer = resp.get_json()
            refused = answer.get("errors", answer.get("rejected"))
            assert [r["index"] for r in refused] == [0] and "nested deeper than 64" in json.dumps(refused)
            continue
        assert resp.status_code == 422


def field_cases(base: dict) -> list[tuple[str, dict]]:
    return [
        ("negative counter", {**base, "items_failed": -1}),
        ("negative duration", {**base, "duration_ms": -5}),
        ("negative retry count", {**base, "api_retry_count": -1}),
        ("counter as text", {**base, "items_succeeded": "many"}),
        ("unknown status", {**base, "status": "exploded"}),
        ("start without zone", {**base, "start_time": "2026-01-12T10:30:00"}),
        ("start in year 99999", {**base, "start_time": "99999-01-01T00:00:00Z"}),
        ("NUL in a field", {**base, "error_summary": "bad\u0000byte"}),
        ("NUL in JSON key", {**base, "metrics_json": {"k\u0000": 1}}),
        ("deep metrics", {**base, "metrics_json": json.loads(DEEP)}),
        ("bad commit source", {**base, "git_commit_source": "robot"}),
        ("above the text limit", {**base, "error_details": "x" * (MAX_TEXT_CHARS + 1)}),
    ]


def test_bad_fields_are_a_422_with_one_item_per_field_and_change_nothing(client, db, seeded):
    before = dump_store(db)
    for name, body in field_cases(run_body()):
        resp = client.post("/api/v1/runs", json=body)
        assert_clear_4xx(resp, 422)
        resp = client.post("/api/v1/runs/batch", json=[body])
        assert resp.status_code in (201, 422), name
        if resp.status_code == 201:
            answer = resp.get_json()
            assert answer["inserted"] == 0 and len(answer["errors"]) == 1, (name, answer)
        patch = {k: v for k, v in body.items() if k not in ("event_id", "run_id", "agent_name", "job_type",
                                                             "start_time")}
        if patch:
            resp = client.patch(f"/api/v1/runs/{seeded[0]}", json=patch)
            assert resp.status_code in (400, 422), (name, resp.status_code)
    assert dump_store(db) == before


def test_ingest_rejects_bad_lines_one_by_one_and_stores_nothing_of_them(client, db, seeded):
    before = dump_store(db)
    good = {"v": 1, "id": "line-x", "kind": "event", "ts": "2026-01-12T10:30:00Z", "event_id": seeded[0],
            "run_id": "r", "agent_name": "a", "job_type": "j", "start_time": "2026-01-12T10:30:00Z",
            "data": {"event_type": "e", "payload": None}}
    lines = [
        {**good, "id": "l1", "v": 2},
        {**good, "id": "l2", "kind": "bogus"},
        {**good, "id": "l3", "data": {"event_type": "e", "payload": json.loads(DEEP)}},
        {**good, "id": "l4", "agent_name": "nul\u0000"},
        {**good, "id": "l5", "kind": "run_updated", "data": {"items_failed": -3}},
        {**good, "id": "l6", "ts": "yesterday"},
        "not an object",
        None,
        {**good, "id": ""},
    ]
    resp = client.post("/api/v1/ingest", json=lines)
    assert resp.status_code in (200, 422), resp.get_json()
    if resp.status_code == 200:
        answer = resp.get_json()
        assert answer["accepted"] == 0 and len(answer["rejected"]) == len(lines), answer
        assert all(r["detail"] for r in answer["rejected"])
    assert dump_store(db) == before


@pytest.mark.parametrize("path", ["/api/v1/runs", "/api/v1/runs/{id}/events", "/api/v1/runs/stale",
                                  "/api/v1/stats", "/api/v1/metadata"])
def test_absurd_query_values_are_a_4xx_not_a_500(path, client, db, seeded):
    before = dump_store(db)
    path = path.format(id=seeded[0])
    for query in ("limit=100000000000000000000000", "limit=-1", "limit=0", "limit=abc", "offset=-5",
                  "older_than_minutes=-1", "older_than_minutes=99999999999999999999", "cursor=%00%ff",
                  "cursor=bm90LWEtY3Vyc29y", "since=not-a-date", "bucket=century", "created_after=2026-13-45",
                  "start_time_from=%00", "status=exploded", "agent_name=%00"):
        resp = client.get(f"{path}?{query}")
        assert resp.status_code < 500, (path, query, resp.get_data(as_text=True)[:300])
        if resp.status_code >= 400:
            assert_clear_4xx(resp)
    assert dump_store(db) == before


@pytest.mark.parametrize("size", [10_000, 100_000, MAX_TEXT_CHARS])
def test_long_fields_are_stored_verbatim_up_to_the_documented_limit(size, client):
    text = ("ab<c>'\"; é🙂" * (size // 10 + 1))[:size]
    names = ("error_details", "error_summary", "input_summary", "output_summary", "product", "website",
             "git_commit_author")
    fields = {name: text for name in (names if size <= 100_000 else names[:1])}  # the body limit is 10 MiB
    body = run_body(**fields, metrics_json={"long": text})
    resp = client.post("/api/v1/runs", json=body)
    assert resp.status_code == 201, resp.get_json()
    stored = client.get(f"/api/v1/runs/{body['event_id']}").get_json()
    for name in fields:
        assert stored[name] == text, name  # never silently cut
    assert stored["metrics_json"] == {"long": text}


# -------------------------------------------------------------- through real gunicorn


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_eleven_mib_body_gets_a_413_that_the_client_actually_receives(console_server):
    body = b"[" + b" " * (11 * 1024 * 1024) + b"]"
    for path in ("/api/v1/runs/batch", "/api/v1/ingest", "/api/v1/runs"):
        resp = requests.post(console_server.url + path, data=body, headers={"Content-Type": "application/json"},
                             timeout=60)
        assert resp.status_code == 413, (path, resp.status_code, resp.text[:300])
        assert "limit" in resp.json()["detail"]
    assert requests.get(console_server.url + "/health", timeout=10).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_chunked_body_without_length_over_the_limit_is_refused(console_server):
    # No Content-Length: the server cannot refuse up front; it must stop at the limit.
    def chunks():
        for _ in range(11 * 16):
            yield b" " * 65536

    resp = requests.post(console_server.url + "/api/v1/ingest", data=chunks(),
                         headers={"Content-Type": "application/json"}, timeout=60)
    assert resp.status_code == 413, resp.text[:300]
    assert "limit" in resp.json()["detail"]
    assert requests.get(console_server.url + "/health", timeout=10).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_slowloris_header_does_not_stop_other_clients(console_server):
    with socket.create_connection(("127.0.0.1", console_server.port)) as sock:
        sock.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")  # ... and never more
        assert requests.get(console_server.url + "/health", timeout=10).status_code == 200


def test_a_nul_in_any_url_is_a_4xx_on_every_route(app, client, seeded):
    """PostgreSQL cannot hold NUL in text: a NUL in a path or filter must never reach it (was a 500)."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<{arg}>", "x%00y").replace(f"<path:{arg}>", "x%00y")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for url in (path, path + "?agent_name=a%00b&q=%00&job_type=%00&status=%00"):
                resp = client.open(url, method=method, json={})
                assert resp.status_code < 500, (method, url, resp.get_data(as_text=True)[:300])


@pytest.mark.parametrize("word", ["stale", "batch", "mark-failed"])
def test_an_event_id_that_names_a_route_is_refused_or_reachable(word, client):
    resp = client.post("/api/v1/runs", json=run_body(event_id=word))
    if resp.status_code == 422:
        return  # refused up front: fine
    assert resp.status_code == 201
    got = client.get(f"/api/v1/runs/{word}")
    assert got.status_code == 200 and isinstance(got.get_json(), dict) and got.get_json()["event_id"] == word
    assert client.patch(f"/api/v1/runs/{word}", json={"status": "success"}).status_code == 200
    assert client.delete(f"/api/v1/runs/{word}").status_code == 204
