"""Alert tests: a real HTTP receiver, the app's API, and evaluation and delivery on a movable clock."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from console.alerts import deliver
from console.alerts.evaluate import evaluate
from console.core.timeutil import format_utc, utcnow


class Receiver:
    """A webhook receiver on a loopback port: records every POST, answers from a script.

    Each script item is a status code, or (code, {header: value}); the last one repeats.
    """

    def __init__(self):
        self.script: list[Any] = [200]
        self.requests: list[dict[str, Any]] = []
        self.hold = threading.Event()  # set: answers wait until released
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                          "json": json.loads(body) if body else None})
                if receiver.hold.is_set():
                    receiver.release.wait(30)
                item = receiver.script.pop(0) if len(receiver.script) > 1 else receiver.script[0]
                code, headers = item if isinstance(item, tuple) else (item, {})
                try:
                    self.send_response(code)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(f"answer {code}".encode())
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def documents(self) -> list[dict[str, Any]]:
        return [r["json"] for r in self.requests]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Hang guard only: returns as soon as `count` requests arrived."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.documents

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


class Clock:
    """The injectable clock: starts at the real now and moves only when told."""

    def __init__(self, start: datetime | None = None):
        self.now = start or utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class Alerts:
    """The API through the test client, and the leader's work (evaluate, deliver) on the clock."""

    def __init__(self, client, db, settings, clock: Clock):
        self.client, self.db, self.settings, self.clock = client, db, settings, clock

    def post(self, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        answer = self.client.post(f"/api/v1/alerts/{path}", json=body)
        assert answer.status_code == status, answer.get_json()
        return answer.get_json()

    def channel(self, target: str, kind: str = "webhook", name: str | None = None) -> int:
        return self.post("channels", {"name": name or f"ch-{uuid.uuid4().hex[:6]}", "kind": kind,
                                      "target": target})["id"]

    def rule(self, channel_ids: list[int], **fields) -> dict[str, Any]:
        body = {"name": f"rule-{uuid.uuid4().hex[:6]}", "agent_name": "etl", "on": "failure",
                "channels": channel_ids, "notify_resolved": True, "repeat_minutes": 0, **fields}
        return self.post("rules", body)

    def run(self, status: str = "success", agent_name: str = "etl", job_type: str = "nightly", **fields) -> str:
        start = fields.pop("start_time", self.clock.now - timedelta(seconds=5))
        event_id = str(uuid.uuid4())
        body = {"event_id": event_id, "run_id": f"r-{event_id[:8]}", "agent_name": agent_name,
                "job_type": job_type, "status": status, "start_time": format_utc(start), **fields}
        if status != "running":
            body.setdefault("end_time", format_utc(start + timedelta(seconds=1)))
        answer = self.client.post("/api/v1/runs", json=body)
        assert answer.status_code == 201, answer.get_json()
        return event_id

    def evaluate(self) -> dict[str, int]:
        return self.db.write(lambda s: evaluate(s, self.settings, self.clock(), "test"))

    def deliver(self) -> dict[str, int]:
        return deliver.deliver_due(self.db, self.settings, self.clock, "test")

    def tick(self) -> dict[str, int]:
        counts = self.evaluate()
        counts.update(self.deliver())
        return counts

    def incidents(self, **query) -> list[dict[str, Any]]:
        answer = self.client.get("/api/v1/alerts/incidents", query_string=query)
        assert answer.status_code == 200
        return answer.get_json()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def alerts(client, db, settings, clock):
    return Alerts(client, db, settings, clock)
