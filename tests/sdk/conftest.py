"""Fixtures for the SDK tests: a scripted loopback ingest server and a real console."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

KINDS = {"run_started", "run_updated", "run_ended", "event", "commit", "heartbeat"}
ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


class FakeIngest:
    """A loopback HTTP server that answers POST /api/v1/ingest like the console's contract."""

    def __init__(self):
        self.lines = {}  # id -> parsed line
        self.order = []
        self.requests = []  # (headers, number of lines)
        self.script = []  # responses to give before behaving normally: (status, headers, body)
        self.reject_if = None  # callable(line) -> detail or None
        self.fail_batch_if = None  # callable(lines) -> (status, answer) for the whole batch, or None
        self.hang = threading.Event()
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._send(200, {}, {"status": "ok", "version": "test"})  # the console's /health

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with fake.lock:
                    fake.requests.append((dict(self.headers), body))
                if fake.hang.is_set():
                    time.sleep(30)
                with fake.lock:
                    if fake.script:
                        status, headers, answer = fake.script.pop(0)
                        return self._send(status, headers, answer)
                try:
                    items = json.loads(body)
                except ValueError:
                    return self._send(400, {}, {"detail": "body is not JSON"})
                failure = fake.fail_batch_if(items) if fake.fail_batch_if else None
                if failure:
                    return self._send(failure[0], {}, failure[1])
                if not isinstance(items, list):
                    return self._send(422, {}, {"detail": [{"loc": ["body"], "msg": "not an array",
                                                            "type": "type_error"}]})
                accepted = duplicates = 0
                rejected = []
                with fake.lock:
                    for index, item in enumerate(items):
                        detail = None
                        if not isinstance(item, dict) or item.get("v") != 1:
                            detail = "unsupported spool version"
                        elif item.get("kind") not in KINDS:
                            detail = "unknown kind"
                        elif fake.reject_if:
                            detail = fake.reject_if(item)
                        if detail:
                            rejected.append({"index": index, "id": item.get("id"), "detail": detail})
                        elif item["id"] in fake.lines:
                            duplicates += 1
                        else:
                            fake.lines[item["id"]] = item
                            fake.order.append(item["id"])
                            accepted += 1
                self._send(200, {}, {"accepted": accepted, "duplicates": duplicates,
                                     "rejected": rejected})

            def _send(self, status, headers, answer):
                # bytes: a page as something other than the console would answer (HTML).
                raw = isinstance(answer, bytes)
                data = answer if raw else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if raw else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def kinds(self, kind):
        with self.lock:
            return [self.lines[i] for i in self.order if self.lines[i]["kind"] == kind]

    def close(self):
        self.hang.clear()
        self.server.shutdown()
        self.server.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A sender that gave up (a test's timeout) closed its end first: expected, not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture
def fake_ingest():
    server = FakeIngest()
    yield server
    server.close()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def sdk_env(tmp_path, monkeypatch):
    """Point the SDK at a fresh base dir and nothing else (no git, no heartbeats)."""
    base = tmp_path / "base"
    for name in list(os.environ):
        if name.startswith(("TELEMETRY_", "METRICS_API", "AGENT_METRICS")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TELEMETRY_BASE_DIR", str(base))
    monkeypatch.setenv("TELEMETRY_API_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("TELEMETRY_GIT_DETECT", "false")
    monkeypatch.setenv("TELEMETRY_HEARTBEAT_SECONDS", "0")
    return base


def wait_for(predicate, timeout=20.0, interval=0.02):
    """Poll until predicate() is truthy; return its last value (hang-only timeout)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


class Console:
    """The real console (`python -m console serve`) on a loopback port."""

    def __init__(self, workdir: Path, port: int):
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = None
        self.log = workdir / "console.log"

    def start(self, timeout=60.0):
        env = dict(os.environ)
        env.update(
            TELEMETRY_DB_PATH=str(self.workdir / "console.sqlite"),
            TELEMETRY_API_PORT=str(self.port),
            TELEMETRY_API_HOST="127.0.0.1",
            TELEMETRY_BASE_DIR=str(self.workdir / "console-base"),
            TELEMETRY_SCHEDULER_ENABLED="false",
        )
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([PYTHON, "-m", "console", "serve"], cwd=ROOT, env=env,
                                         stdout=log, stderr=subprocess.STDOUT)
        ok = wait_for(self._healthy, timeout=timeout, interval=0.1)
        if not ok:
            self.stop()
            pytest.fail(f"console did not become healthy; log:\n{self.log.read_text()[-3000:]}")

    def _healthy(self):
        if self.proc.poll() is not None:
            return False
        try:
            return requests.get(self.url + "/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def run(self, event_id):
        resp = requests.get(f"{self.url}/api/v1/runs/{event_id}", timeout=10)
        return resp.json() if resp.status_code == 200 else None

    def events(self, event_id):
        out, url = [], f"{self.url}/api/v1/runs/{event_id}/events?limit=1000"
        while url:
            resp = requests.get(url, timeout=10)
            if resp.status_code != 200:
                return None
            out.extend(resp.json())
            url = resp.links.get("next", {}).get("url")
        return out

    def runs(self, **params):
        params.setdefault("limit", 1000)
        return requests.get(f"{self.url}/api/v1/runs", params=params, timeout=10).json()


@pytest.fixture
def console_factory(tmp_path):
    """Build (not start) a console; every one built is stopped at teardown."""
    made = []

    def make():
        console = Console(tmp_path, free_port())
        made.append(console)
        return console

    yield make
    for console in made:
        console.stop()


@pytest.fixture
def console(console_factory):
    c = console_factory()
    c.start()
    return c
