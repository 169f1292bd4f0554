"""The `telemetry` command: status, sync exit codes, tail, import."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from telemetry import TelemetryClient
from telemetry.cli import main


def test_sync_exit_codes(sdk_env, fake_ingest, monkeypatch, capsys):
    assert main(["sync", "--timeout", "1"]) == 0  # nothing spooled at all
    client = TelemetryClient()  # console down
    client.end_run(client.start_run("a", "j"))
    assert main(["sync", "--timeout", "0.5"]) == 1
    assert "2 record(s) still pending" in capsys.readouterr().err
    client._sender.stop()
    monkeypatch.setenv("TELEMETRY_API_URL", fake_ingest.url)
    fake_ingest.reject_if = lambda line: "nope" if line["kind"] == "run_ended" else None
    assert main(["sync", "--timeout", "20"]) == 0
    assert "1 record(s) rejected" in capsys.readouterr().err
    monkeypatch.setenv("TELEMETRY_API_URL", "ftp://x")
    assert main(["sync"]) == 2


def test_status_reports_counts_and_reachability(sdk_env, capsys):
    client = TelemetryClient()
    client.end_run(client.start_run("a", "j"))
    assert main(["status", "--json", "--timeout", "0.5"]) == 1  # nothing listens at the URL
    report = json.loads(capsys.readouterr().out)
    assert report["pending"] == 2 and report["delivered"] == 0 and report["rejected"] == 0
    assert report["console_reachable"].startswith("no")
    assert report["base_dir"] == str(sdk_env)


def test_tail_prints_human_readable_lines(sdk_env, capsys):
    client = TelemetryClient()
    with client.track_run("tail-agent", "job") as ctx:
        ctx.log_event("checkpoint", {"step": 1})
    assert main(["tail", "--no-follow", "-n", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    assert "run_started" in out[0] and "tail-agent/job" in out[0]
    assert 'checkpoint {"step": 1}' in out[1] and "success in" in out[2]


def test_import_sends_an_older_tools_ndjson(sdk_env, fake_ingest, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TELEMETRY_API_URL", fake_ingest.url)
    legacy = tmp_path / "events_20250101.ndjson"
    rows = [
        {"record_type": "run", "run_id": "old-1", "agent_name": "old", "job_type": "j",
         "trigger_type": "cli", "start_time": "2025-01-01T10:00:00", "status": "running"},
        {"record_type": "event", "run_id": "old-1", "event_type": "step", "timestamp":
         "2025-01-01T10:00:01+00:00", "payload_json": "{\"n\": 1}"},
        {"record_type": "run", "run_id": "old-1", "agent_name": "old", "job_type": "j",
         "trigger_type": "cli", "start_time": "2025-01-01T10:00:00", "status": "failed",
         "end_time": "2025-01-01T10:01:00+00:00", "items_failed": 2, "metrics_json": "{\"a\": 1}"},
        {"record_type": "event", "run_id": "unknown", "event_type": "x", "timestamp": "2025-01-01"},
    ]
    legacy.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    assert main(["import", str(legacy), "--timeout", "20"]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and err.count("skipped") == 2
    started, ended = fake_ingest.kinds("run_started"), fake_ingest.kinds("run_ended")
    assert started[0]["start_time"] == "2025-01-01T10:00:00+00:00"
    assert ended[0]["data"]["status"] == "failure" and ended[0]["data"]["items_failed"] == 2
    assert fake_ingest.kinds("event")[0]["data"] == {"event_type": "step", "payload": {"n": 1}}
    assert len({x["event_id"] for x in fake_ingest.lines.values()}) == 1
    before = len(fake_ingest.lines)
    assert main(["import", str(legacy), "--timeout", "20"]) == 0  # re-import: same ids
    assert len(fake_ingest.lines) == before


@pytest.fixture
def not_the_console():
    """Start a loopback server that answers every GET with a fixed status, type and body."""
    servers = []

    def start(status, content_type, body):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "status, content_type, body",
    [
        (200, "text/html", b"<html><body>Sign in to the proxy</body></html>"),
        (404, "text/html", b"<h1>Not Found</h1>"),
        (200, "application/json", b'{"status": "ok"}'),  # another service's health answer
        (200, "application/json", b'["status", "ok"]'),
        (503, "application/json", b'{"status": "ok", "version": "3.0.0"}'),
    ],
)
def test_status_exits_1_when_the_url_answers_but_is_not_the_console(
    sdk_env, not_the_console, monkeypatch, capsys, status, content_type, body
):
    monkeypatch.setenv("TELEMETRY_API_URL", not_the_console(status, content_type, body))
    assert main(["status", "--json", "--timeout", "5"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["console_reachable"].startswith(f"no (HTTP {status}, not the console")


def test_status_exits_0_against_the_real_console(sdk_env, console, monkeypatch, capsys):
    monkeypatch.setenv("TELEMETRY_API_URL", console.url)
    assert main(["status", "--timeout", "10"]) == 0
    out = capsys.readouterr().out
    assert "console_reachable  yes (HTTP 200, console " in out


def test_status_gives_up_on_a_console_that_never_answers(sdk_env, monkeypatch, capsys):
    import socket
    import time

    with socket.socket() as listener:  # accepts connections (the kernel's backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        monkeypatch.setenv("TELEMETRY_API_URL", f"http://127.0.0.1:{listener.getsockname()[1]}")
        started = time.monotonic()
        assert main(["status", "--json", "--timeout", "0.5"]) == 1
        assert time.monotonic() - started < 5.0  # hang guard: 10x the timeout
    assert json.loads(capsys.readouterr().out)["console_reachable"] == "no (ReadTimeout)"


def _import_with_stderr(tmp_path, stderr, rows: int):
    """`telemetry import` of `rows` older run records in a subprocess, stderr to `stderr`; (code, stdout)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    tmp_path.mkdir(parents=True, exist_ok=True)
    legacy = tmp_path / "events_20250101.ndjson"
    legacy.write_text("".join(
        json.dumps({"record_type": "run", "run_id": f"old-{i}", "agent_name": "old", "job_type": "j",
                    "start_time": "2025-01-01T10:00:00+00:00", "status": "success",
                    "end_time": "2025-01-01T10:00:01+00:00"}) + "\n" for i in range(rows)))
    sdk = Path(__file__).resolve().parents[2] / "sdk"
    env = {**os.environ, "PYTHONPATH": str(sdk), "TELEMETRY_BASE_DIR": str(tmp_path / "base"),
           "TELEMETRY_API_URL": "http://127.0.0.1:9"}  # nothing listens: the records stay spooled
    proc = subprocess.run([sys.executable, "-m", "telemetry.cli", "import", str(legacy), "--timeout", "0.2"],
                          env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=120)
    return proc.returncode, proc.stdout


def test_import_shows_progress_on_a_terminal_only(tmp_path):
    import os
    import pty

    master, slave = pty.openpty()
    code, out = _import_with_stderr(tmp_path / "tty", slave, 10_001)
    os.close(slave)
    terminal = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        terminal += data
    os.close(master)
    assert "queued 10001 record(s)" in out
    assert b"10000 record(s) queued" in terminal  # one progress line per 10,000

    piped = tmp_path / "piped.err"
    with open(piped, "w") as err:
        code, out = _import_with_stderr(tmp_path / "pipe", err, 10_001)
    assert "queued 10001 record(s)" in out
    assert "record(s) queued" not in piped.read_text()  # quiet when not a terminal
