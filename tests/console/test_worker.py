"""The console's gunicorn worker (console/worker.py) under real `serve`: a thread that
keeps serving its keep-alive connection must neither lose requests nor starve others."""

import http.client
import json
import threading
import time
import uuid

import pytest

from tests.helpers import ConsoleProcess, free_port


@pytest.fixture
def one_thread_console(tmp_path):
    console = ConsoleProcess({"TELEMETRY_DB_PATH": str(tmp_path / "w.sqlite"), "TELEMETRY_API_PORT": str(free_port()),
                              "TELEMETRY_API_THREADS": "1", "TELEMETRY_BASE_DIR": str(tmp_path / "base")},
                             tmp_path / "log")
    console.start()
    yield console
    console.stop()


def _post_run(conn: http.client.HTTPConnection, event_id: str) -> int:
    body = json.dumps({"event_id": event_id, "run_id": event_id, "agent_name": "w", "job_type": "t",
                       "start_time": "2026-01-01T00:00:00Z"})
    conn.request("POST", "/api/v1/runs", body=body, headers={"Content-Type": "application/json"})
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
    conn.request("GET", "/api/v1/runs?agent_name=w&limit=100")
    stored = json.loads(conn.getresponse().read())
    assert sorted(run["event_id"] for run in stored) == sorted(ids)


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
