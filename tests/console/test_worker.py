"""The console's gunicorn worker (console/server/worker.py) under real `serve`: a thread that
keeps serving its keep-alive connection must neither lose requests nor starve others."""

import http.client
import json
import socket
import threading
import time
import uuid

import pytest

from tests.helpers import ConsoleProcess, free_port


def _one_thread_console(tmp_path, **env):
    return ConsoleProcess({"TELEMETRY_DB_PATH": str(tmp_path / "w.sqlite"), "TELEMETRY_API_PORT": str(free_port()),
                           "TELEMETRY_API_THREADS": "1", "TELEMETRY_BASE_DIR": str(tmp_path / "base"), **env},
                          tmp_path / "log")


@pytest.fixture
def one_thread_console(tmp_path):
    console = _one_thread_console(tmp_path)
    console.start()
    yield console
    console.stop()


@pytest.fixture
def impatient_console(tmp_path):
    """One thread, and a request not whole 3 s after its first byte is dropped."""
    console = _one_thread_console(tmp_path, TELEMETRY_API_REQUEST_DEADLINE="3")
    console.start()
    yield console
    console.stop()


def _run_body(event_id: str, agent_name: str = "w") -> bytes:
    return json.dumps({"event_id": event_id, "run_id": event_id, "agent_name": agent_name, "job_type": "t",
                       "start_time": "2026-01-01T00:00:00Z"}).encode()


def _stored_event_ids(port: int, agent_name: str) -> list[str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", f"/api/v1/runs?agent_name={agent_name}&limit=100")
    return sorted(run["event_id"] for run in json.loads(conn.getresponse().read()))


def _request_head(body: bytes) -> bytes:
    return (f"POST /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()


def _read_until_closed(sock) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _post_run(conn: http.client.HTTPConnection, event_id: str) -> int:
    conn.request("POST", "/api/v1/runs", body=_run_body(event_id), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status


def test_one_keepalive_connection_is_served_request_after_request_and_after_a_pause(one_thread_console):
    conn = http.client.HTTPConnection("127.0.0.1", one_thread_console.port, timeout=10)
    ids = [str(uuid.uuid4()) for _ in range(30)]
    statuses = [_post_run(conn, event_id) for event_id in ids[:20]]
    socket_before = conn.sock
    time.sleep(0.2)  # longer than the thread watches: the connection goes back to the poller
    statuses += [_post_run(conn, event_id) for event_id in ids[20:]]
    assert statuses == [201] * 30
    assert conn.sock is socket_before  # one keep-alive connection throughout
    assert _stored_event_ids(one_thread_console.port, "w") == sorted(ids)


def test_a_busy_keepalive_connection_does_not_starve_another_with_one_thread(one_thread_console):
    stop = threading.Event()
    busy_answers = []

    def keep_busy():
        conn = http.client.HTTPConnection("127.0.0.1", one_thread_console.port, timeout=10)
        while not stop.is_set():  # the next request goes out as soon as the answer is in
            conn.request("GET", "/version")
            response = conn.getresponse()
            response.read()
            busy_answers.append(response.status)

    busy = threading.Thread(target=keep_busy, daemon=True)
    busy.start()
    try:
        while len(busy_answers) < 5:
            time.sleep(0.01)
        other = http.client.HTTPConnection("127.0.0.1", one_thread_console.port, timeout=10)
        # Served between the busy connection's requests: the one thread must let go of it.
        statuses = [_post_run(other, str(uuid.uuid4())) for _ in range(10)]
    finally:
        stop.set()
        busy.join(15)
    assert statuses == [201] * 10
    assert set(busy_answers) == {200}


def _read_responses(sock, count: int, deadline_seconds: float) -> list[int]:
    """The status codes of the next `count` HTTP responses on `sock` (Content-Length bodies)."""
    sock.settimeout(deadline_seconds)
    data, statuses = b"", []
    try:
        while len(statuses) < count:
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                head = data[:head_end].decode("latin-1").split("\r\n")
                length = next(int(h.split(":", 1)[1]) for h in head if h.lower().startswith("content-length:"))
                if len(data) >= head_end + 4 + length:
                    statuses.append(int(head[0].split()[1]))
                    data = data[head_end + 4 + length :]
                    continue
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    return statuses


@pytest.mark.parametrize("pipelined", [2, 5])
def test_pipelined_requests_sent_together_are_all_answered(one_thread_console, pipelined):
    # HTTP/1.1 lets a client send its next requests before the answers: the later ones
    # then wait in the server's read buffer, and no socket readiness announces them.
    ids = [str(uuid.uuid4()) for _ in range(pipelined)]
    requests = b"".join(_request_head(body) + body for body in (_run_body(i, agent_name="p") for i in ids))
    with socket.create_connection(("127.0.0.1", one_thread_console.port), timeout=10) as sock:
        sock.sendall(requests)
        # Well inside the 5 s keep-alive timeout, after which the connection would close.
        assert _read_responses(sock, pipelined, deadline_seconds=3) == [201] * pipelined
    assert _stored_event_ids(one_thread_console.port, "p") == sorted(ids)


@pytest.mark.parametrize("sent", ["half the head", "the head and half the body"])
def test_a_request_not_whole_by_the_deadline_is_answered_408_and_never_holds_the_thread(impatient_console, sent):
    body = _run_body(str(uuid.uuid4()), agent_name="silent")
    partial = _request_head(body)[:20] if sent == "half the head" else _request_head(body) + body[: len(body) // 2]
    with socket.create_connection(("127.0.0.1", impatient_console.port), timeout=10) as stalled:
        stalled.sendall(partial)
        time.sleep(0.2)  # the worker has read the partial request
        other = http.client.HTTPConnection("127.0.0.1", impatient_console.port, timeout=10)
        other.request("GET", "/version")  # the one thread is free: the loop holds the partial request
        response = other.getresponse()
        response.read()
        assert response.status == 200
        stalled.setblocking(False)
        with pytest.raises(BlockingIOError):  # answered before the stalled request was dropped
            stalled.recv(1)
        stalled.settimeout(30)  # a hang guard, ten times the deadline
        head, _, answer = _read_until_closed(stalled).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert "within 3 s" in json.loads(answer)["detail"]
    assert _stored_event_ids(impatient_console.port, "silent") == []  # nothing of the half request was stored


def test_a_slow_client_that_keeps_sending_is_served(impatient_console):
    event_id = str(uuid.uuid4())
    body = _run_body(event_id, agent_name="slow")
    with socket.create_connection(("127.0.0.1", impatient_console.port), timeout=10) as slow:
        for part in (_request_head(body), body[:10], body[10:]):  # whole 1.2 s after its first byte, within 3 s
            slow.sendall(part)
            time.sleep(0.6)
        assert _read_responses(slow, 1, deadline_seconds=5) == [201]


def _raw_exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Send `request`, read until the server closes; (head, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        received = _read_until_closed(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "detail"),
    [
        (b"GET /api/v1/runs?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "too large"),
        (b"GET /api/v1/runs HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "headers"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "Invalid"),
    ],
    ids=["request line over 4094 bytes", "header over 8190 bytes", "malformed request line"],
)
def test_requests_gunicorn_cannot_parse_are_answered_in_json(one_thread_console, request_bytes, status, detail):
    head, body = _raw_exchange(one_thread_console.port, request_bytes)
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} ")
    assert "content-type: application/json" in [line.lower() for line in lines]
    assert detail in json.loads(body)["detail"]
    # The worker serves on: the next request on a new connection is answered.
    conn = http.client.HTTPConnection("127.0.0.1", one_thread_console.port, timeout=10)
    conn.request("GET", "/version")
    assert conn.getresponse().status == 200


def test_a_chunked_request_is_read_whole_and_stored(one_thread_console):
    event_id = str(uuid.uuid4())
    body = _run_body(event_id, agent_name="chunked")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:])) + b"0\r\n\r\n"
    head = b"POST /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection(("127.0.0.1", one_thread_console.port), timeout=10) as sock:
        sock.sendall(head + chunks)
        assert _read_responses(sock, 1, deadline_seconds=5) == [201]
    assert _stored_event_ids(one_thread_console.port, "chunked") == [event_id]


def test_an_oversized_body_is_refused_413_in_json_while_the_client_still_sends(tmp_path):
    console = _one_thread_console(tmp_path, TELEMETRY_MAX_BODY_BYTES="2048")
    console.start()
    try:
        head = _request_head(b"x" * 100_000)
        with socket.create_connection(("127.0.0.1", console.port), timeout=10) as sock:
            sock.sendall(head + b"x" * 4096)  # the client keeps its body coming
            answer, _, body = _read_until_closed(sock).partition(b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert json.loads(body)["detail"] == "request body is 100000 bytes; the limit is 2048 bytes"
        assert _stored_event_ids(console.port, "w") == []
    finally:
        console.stop()


def test_a_head_over_64_kib_is_refused_431_in_json(one_thread_console):
    many_headers = b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))
    head, body = _raw_exchange(one_thread_console.port, b"GET /health HTTP/1.1\r\nHost: x\r\n" + many_headers + b"\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert "65536 bytes" in json.loads(body)["detail"]


def test_a_client_that_expects_100_continue_gets_it_before_it_sends_its_body(one_thread_console):
    event_id = str(uuid.uuid4())
    body = _run_body(event_id, agent_name="expect")
    head = _request_head(body).replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n")
    with socket.create_connection(("127.0.0.1", one_thread_console.port), timeout=10) as sock:
        sock.sendall(head)
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"  # before any byte of the body
        sock.sendall(body)
        received = b""
        while b"HTTP/1.1 201" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    assert _stored_event_ids(one_thread_console.port, "expect") == [event_id]
