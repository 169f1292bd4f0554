"""Public reads and bodies have a bounded cost: deep offsets, short `q`, many distinct
values, and bodies larger than the limit are refused or cut, with a `detail`."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from console.domain.runs import METADATA_DEFAULT_LIMIT, METADATA_MAX_LIMIT
from console.domain.validation import MAX_OFFSET
from tests.security.conftest import dump_store, run_body


def post(client, **fields) -> dict:
    body = run_body(**fields)
    assert client.post("/api/v1/runs", json=body).status_code == 201
    return body


def details(resp) -> str:
    assert resp.status_code == 422, (resp.status_code, resp.get_json())
    return " ".join(item["msg"] for item in resp.get_json()["detail"])


def test_offset_works_up_to_the_documented_maximum_and_beyond_it_points_to_cursor(client, db):
    post(client, run_id="only-run")
    assert [r["run_id"] for r in client.get("/api/v1/runs?offset=0").get_json()] == ["only-run"]
    assert client.get(f"/api/v1/runs?offset={MAX_OFFSET}").get_json() == []
    before = dump_store(db)
    for offset in (MAX_OFFSET + 1, 2**62, 10**30):
        detail = details(client.get(f"/api/v1/runs?offset={offset}"))
        assert "cursor" in detail and "1,000,000" in detail
    assert dump_store(db) == before


@pytest.mark.parametrize("q", ["a", "ab", "%", "__", " ", "é", "日本"])
def test_a_q_too_short_for_the_trigram_index_is_a_422(client, q):
    from urllib.parse import quote

    detail = details(client.get(f"/api/v1/runs?q={quote(q, safe='')}"))
    assert "3 characters" in detail


def test_a_q_of_three_characters_rides_the_index(client):
    post(client, run_id="nightly-42", error_summary="disk full")
    post(client, run_id="other", error_summary="fine")
    assert [r["run_id"] for r in client.get("/api/v1/runs?q=y-4").get_json()] == ["nightly-42"]
    assert [r["run_id"] for r in client.get("/api/v1/runs?q=DIS").get_json()] == ["nightly-42"]


def test_the_runs_page_says_why_a_short_q_finds_nothing(client):
    resp = client.get("/?q=ab")
    assert resp.status_code == 400
    assert "at least 3 characters" in resp.get_data(as_text=True)


def test_metadata_of_a_high_cardinality_field_is_cut_at_its_limit_and_says_so(client):
    items = [run_body(parent_run_id=f"parent-{i:04d}") for i in range(METADATA_DEFAULT_LIMIT + 5)]
    for start in range(0, len(items), 500):
        resp = client.post("/api/v1/runs/batch", json=items[start:start + 500])
        assert resp.status_code == 201 and resp.get_json()["inserted"] == len(items[start:start + 500])
    for field in ("parent_run_id", "item_name"):  # one field with an index, one without
        if field == "item_name":
            batch = [run_body(item_name=f"item-{i:04d}") for i in range(12)]
            assert client.post("/api/v1/runs/batch", json=batch).status_code == 201
        default = client.get(f"/api/v1/metadata/{field}").get_json()
        small = client.get(f"/api/v1/metadata/{field}?limit=10").get_json()
        assert small["count"] == len(small["values"]) == 10 and small["truncated"] is True
        assert small["values"] == sorted(small["values"])
        if field == "parent_run_id":
            assert default["count"] == METADATA_DEFAULT_LIMIT and default["truncated"] is True
            assert small["values"] == [f"parent-{i:04d}" for i in range(10)]
            everything = client.get(f"/api/v1/metadata/{field}?limit={METADATA_MAX_LIMIT}").get_json()
            assert everything["count"] == METADATA_DEFAULT_LIMIT + 5 and everything["truncated"] is False
        else:
            assert default["count"] == 12 and default["truncated"] is False
    for bad in ("0", str(METADATA_MAX_LIMIT + 1), "-1", "x"):
        resp = client.get(f"/api/v1/metadata/parent_run_id?limit={bad}")
        assert resp.status_code == 422 and resp.get_json()["detail"][0]["loc"] == ["query", "limit"]


# -------------------------------------------------------------- bodies, through real gunicorn


def read_answer(sock) -> tuple[int, dict, bytes]:
    """Status, headers and body of one HTTP answer with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_huge_content_length_is_answered_413_before_the_body_is_sent(console_server):
    for path in ("/api/v1/ingest", "/api/v1/runs/batch", "/login"):
        with socket.create_connection(("127.0.0.1", console_server.port), timeout=30) as sock:  # hang guard
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {10**15}\r\n\r\n".encode())
            # Not one byte of the body is sent: the answer must come anyway.
            status, _headers, body = read_answer(sock)
            assert status == 413, (path, body[:300])
            assert b"the limit is 10485760 bytes" in body
            if path.startswith("/api/"):
                assert "limit" in json.loads(body)["detail"]
            # The connection ends instead of reading a petabyte before the next request.
            assert sock.recv(65536) == b""


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_chunked_body_is_cut_at_the_limit_with_a_413(console_server):
    with socket.create_connection(("127.0.0.1", console_server.port), timeout=60) as sock:  # hang guard
        sock.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        sent = [0]

        def send_forever():
            chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
            try:
                while sent[0] < 1024 * 1024 * 1024:  # a gigabyte, far past the 10 MiB limit
                    sock.sendall(chunk)
                    sent[0] += 0x10000
            except OSError:
                pass  # the server closed the connection: the body was refused

        sender = threading.Thread(target=send_forever, daemon=True)
        sender.start()
        status, _headers, body = read_answer(sock)
        assert status == 413, body[:300]
        assert json.loads(body)["detail"]
        sender.join(timeout=60)
        assert not sender.is_alive()
        assert sent[0] < 200 * 1024 * 1024, "the server kept reading long past the limit"
    with socket.create_connection(("127.0.0.1", console_server.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_answer(sock)[0] == 200


def test_the_deferred_counts_say_why_a_filter_is_refused_as_a_page_and_a_partial(client):
    for query in ("q=ab", "status=exploded"):
        for headers in ({}, {"HX-Request": "true"}):
            resp = client.get(f"/runs/counts?{query}", headers=headers)
            assert resp.status_code == 400, (query, headers, resp.status_code)
            assert 'class="error"' in resp.get_data(as_text=True)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_small_unread_body_keeps_the_connection_alive(console_server):
    with socket.create_connection(("127.0.0.1", console_server.port), timeout=30) as sock:  # hang guard
        body = b"x" * 1000
        sock.sendall(b"POST /api/v1/no-such-route HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n" + body)
        assert read_answer(sock)[0] == 404
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # the same connection serves the next request
        assert read_answer(sock)[0] == 200
