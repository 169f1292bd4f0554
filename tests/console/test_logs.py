"""The real `python -m console serve`'s log: JSON throughout, and the request id on app lines."""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from datetime import datetime

import requests

from tests.helpers import ConsoleProcess, free_port


def serve(tmp_path, fmt: str) -> ConsoleProcess:
    env = {
        "TELEMETRY_DB_PATH": str(tmp_path / "t.sqlite"),
        "TELEMETRY_BASE_DIR": str(tmp_path / "base"),
        "TELEMETRY_API_PORT": str(free_port()),
        "TELEMETRY_LOG_FORMAT": fmt,
        # A locked file answers 503 (and logs a warning) soon, not after 5 s.
        "TELEMETRY_DB_BUSY_TIMEOUT_MS": "100",
    }
    console = ConsoleProcess(env, tmp_path / "stdout.log", stderr_path=tmp_path / "stderr.log")
    console.start()
    return console


@contextmanager
def file_locked(path):
    """Another tool holds the SQLite file's exclusive lock: the console's reads and writes wait, then 503."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_json_logs_are_json_throughout_and_app_lines_carry_the_request_id(tmp_path):
    console = serve(tmp_path, "json")
    try:
        assert requests.get(console.url + "/health", headers={"X-Request-ID": "ok-1"}, timeout=30).status_code == 200
        assert requests.get(console.url + "/nowhere", headers={"X-Request-ID": "gone-1"}, timeout=30).status_code == 404
        with file_locked(tmp_path / "t.sqlite"):
            busy = requests.get(console.url + "/api/v1/runs", headers={"X-Request-ID": 'busy "1"'}, timeout=30)
        assert busy.status_code == 503
    finally:
        console.stop()
    assert console.proc.returncode == 0

    text = (tmp_path / "stderr.log").read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert lines and all(isinstance(line, dict) for line in lines)
    for line in lines:
        assert datetime.fromisoformat(line["time"]).utcoffset() is not None, line
    assert (tmp_path / "stdout.log").read_text() == ""  # nothing elsewhere

    messages = [line.get("message", "") for line in lines]
    for expected in ("Starting gunicorn", "Booting worker", "Handling signal: term", "Shutting down: Master"):
        assert any(expected in message for message in messages), (expected, messages)

    access = {line["request_id"]: line for line in lines if "request" in line and "status" in line}
    assert access["ok-1"]["status"] == 200 and access["gone-1"]["status"] == 404
    assert access['busy "1"']["status"] == 503 and access['busy "1"']["request"] == "GET /api/v1/runs HTTP/1.1"
    warnings = [line for line in lines if line.get("level") == "WARNING" and line.get("logger") == "console.api"]
    assert [w["request_id"] for w in warnings] == ['busy "1"']  # the access line's id, on the app's line
    assert "database" in warnings[0]["message"]


def test_text_logs_carry_the_request_id_quoted_when_it_is_not_plain(tmp_path):
    console = serve(tmp_path, "text")
    try:
        with file_locked(tmp_path / "t.sqlite"):
            plain = requests.get(console.url + "/api/v1/runs", headers={"X-Request-ID": "trace-42"}, timeout=30)
            odd = requests.get(console.url + "/api/v1/runs", headers={"X-Request-ID": "x level=ERROR"}, timeout=30)
        assert plain.status_code == odd.status_code == 503
    finally:
        console.stop()

    warnings = [line for line in (tmp_path / "stderr.log").read_text().splitlines() if " WARNING console.api" in line]
    assert len(warnings) == 2, warnings
    assert " request_id=trace-42: database unavailable" in warnings[0]
    # A client's id with spaces cannot pass for other fields of the line.
    assert ' request_id="x level=ERROR": database unavailable' in warnings[1]
    assert "Starting gunicorn" in (tmp_path / "stderr.log").read_text()
