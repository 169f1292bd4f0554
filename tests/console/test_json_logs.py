"""TELEMETRY_LOG_FORMAT=json: every line a real `serve` writes is JSON, with times and request ids."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest
import requests

from console.core.logs import configure_logging
from tests.helpers import ConsoleProcess, free_port


@pytest.mark.parametrize("backend", ["sqlite"])
def test_every_line_of_a_json_serve_is_json(env, tmp_path):
    log_path = tmp_path / "console.log"
    server = ConsoleProcess({**env, "TELEMETRY_API_PORT": str(free_port()), "TELEMETRY_LOG_FORMAT": "json",
                             "TELEMETRY_SCHEDULER_ENABLED": "true", "TELEMETRY_DB_BUSY_TIMEOUT_MS": "100"}, log_path)
    server.start()
    try:
        assert requests.get(server.url + "/health", headers={"X-Request-ID": 'rid-"quoted"'}, timeout=10).ok
        assert requests.get(server.url + "/", timeout=10).ok
        assert requests.get(server.url + "/no/such/page", timeout=10).status_code == 404
        assert requests.post(server.url + "/api/v1/runs", json={"agent_name": 1}, timeout=10).status_code in (400, 422)
        # A database locked past the busy timeout: a 503 whose warning carries the request id.
        holder = sqlite3.connect(env["TELEMETRY_DB_PATH"], isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            locked = requests.get(server.url + "/api/v1/runs", headers={"X-Request-ID": "rid-locked-1"}, timeout=30)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert locked.status_code == 503
    finally:
        server.stop()

    lines = log_path.read_text().splitlines()
    assert lines
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not JSON: {line!r}")
    access = [e for e in entries if e.get("logger") == "gunicorn.access"]
    health = [e for e in access if e["request"].startswith("GET /health") and e["request_id"] == 'rid-"quoted"']
    assert len(health) == 1 and health[0]["time"].endswith("+00:00") and health[0]["status"] == 200
    assert all("time" in e for e in entries)
    assert any(e.get("logger") == "gunicorn.error" and "Booting worker" in e["message"] for e in entries)
    unavailable = next(e for e in entries if "database unavailable" in e.get("message", ""))
    assert unavailable["request_id"] == "rid-locked-1" and unavailable["level"] == "WARNING"


@pytest.fixture
def restore_logging(capsys):
    yield
    with capsys.disabled():  # bound to the real stderr again, not this test's capture
        configure_logging("INFO", "text")


def test_text_lines_carry_the_request_id_escaped(capsys, restore_logging):
    configure_logging("INFO", "text", context=lambda: {"request_id": "a\nforged line"})
    logging.getLogger("console.test").info("hello")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hello request_id=a\\nforged line" in err
    configure_logging("INFO", "json", context=lambda: {"request_id": "r-1"})
    logging.getLogger("console.test").warning("hi")
    entry = json.loads(capsys.readouterr().err)
    assert (entry["message"], entry["request_id"], entry["level"]) == ("hi", "r-1", "WARNING")
