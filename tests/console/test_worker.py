"""The console's gunicorn worker (console/worker.py) under real `serve`: a thread that
keeps serving its keep-alive connection must neither lose requests nor starve others."""

import http.client
import json
import os
import threading
import time
import uuid
from pathlib import Path

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


def _workers(master_pid: int) -> list[str]:
    return Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()


def _wait_until_every_worker_listens(master_pid: int, count: int, timeout: float = 30.0) -> None:
    """Until `count` workers watch the listening socket (their epoll set is no longer empty):
    /health answering means only that one of them is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listening = 0
        for pid in _workers(master_pid):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) == "anon_inode:[eventpoll]" and "tfd:" in Path(
                        f"/proc/{pid}/fdinfo/{fd.name}"
                    ).read_text():
                        listening += 1
                        break
                except OSError:
                    continue
        if listening >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} workers listen after {timeout} s")


def _established_per_worker(master_pid: int, port: int) -> list[int]:
    """How many established connections to `port` each worker process holds (from /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
            inodes.add(fields[9])
    counts = []
    for pid in _workers(master_pid):
        held = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            held += target.startswith("socket:[") and target[8:-1] in inodes
        counts.append(held)
    return sorted(counts)


def test_two_workers_share_new_keepalive_connections_evenly(tmp_path):
    console = ConsoleProcess({"TELEMETRY_DB_PATH": str(tmp_path / "b.sqlite"), "TELEMETRY_API_PORT": str(free_port()),
                              "TELEMETRY_API_WORKERS": "2"}, tmp_path / "log")
    console.start()
    connections = []
    try:
        _wait_until_every_worker_listens(console.proc.pid, 2)
        for _ in range(8):  # one after another, as agents start: each lands on the less busy worker
            conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
            conn.request("GET", "/version")
            assert conn.getresponse().read()
            connections.append(conn)
        assert _established_per_worker(console.proc.pid, console.port) == [4, 4]
    finally:
        for conn in connections:
            conn.close()
        console.stop()
