"""A webhook's URL path is its secret (Slack, Discord, Apps Script): never shown, logged or
stored; and a run is never re-sent to where a redirect points. Real loopback servers."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from console.core.timeutil import utcnow
from console.jobs import export
from console.jobs.tables import export_destinations, export_state
from tests.helpers import free_port
from tests.jobs.conftest import insert_runs, run_row

ROOT = Path(__file__).resolve().parents[2]
SECRET_PATH = "/services/T0HIDDENX/B0HIDDENY/zq8HIDDENPATHzq8"


class Receiver:
    """Answers every POST with `code` (and `location`), remembering what it was sent."""

    def __init__(self, code: int = 200, location: str = ""):
        self.code, self.location = code, location
        self.received: list[tuple[str, str, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                receiver.received.append((self.command, self.path, self.rfile.read(length)))
                self.send_response(receiver.code)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = do_GET = do_PUT = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    made: list[Receiver] = []

    def make(code: int = 200, location: str = "") -> Receiver:
        made.append(Receiver(code, location))
        return made[-1]

    yield make
    for server in made:
        server.close()


def one_run_exported(db, settings) -> list[dict]:
    """The export state rows of one run that ended after the destinations appeared."""
    t0 = utcnow()
    export.export_pending(db, settings, now=t0, sleep=lambda _s: None)
    row = run_row(created_at=t0 + timedelta(seconds=1))
    insert_runs(db, [row])
    export.export_pending(db, settings, now=t0 + timedelta(seconds=2), sleep=lambda _s: None)
    with db.read() as session:
        return [dict(r) for r in session.execute(
            sa.select(export_state).where(export_state.c.event_id == row["event_id"])).mappings()]


def stored_text(db) -> str:
    with db.read() as session:
        rows = [*session.execute(sa.select(export_destinations)).all(), *session.execute(sa.select(export_state)).all()]
    return repr(rows)


def test_labels_logs_and_stored_errors_keep_scheme_and_host_only(db, make_settings, servers, caplog):
    hook = servers(500)
    dead = f"http://127.0.0.1:{free_port()}{SECRET_PATH}"  # nothing listens: requests names the path
    settings = make_settings(TELEMETRY_EXPORT_WEBHOOK_URLS=f"{hook.origin}{SECRET_PATH}?k=HIDDENQUERY,{dead}",
                             TELEMETRY_EXPORT_TIMEOUT_MS=2000, TELEMETRY_EXPORT_MAX_ATTEMPTS=1)
    caplog.set_level(logging.DEBUG)
    states = one_run_exported(db, settings)
    assert hook.received and hook.received[0][1] == f"{SECRET_PATH}?k=HIDDENQUERY"  # the real URL was used
    assert [s["state"] for s in states] == ["gave_up", "gave_up"]
    with db.read() as session:
        labels = set(session.execute(sa.select(export_destinations.c.label)).scalars())
    assert labels == {hook.origin, dead.removesuffix(SECRET_PATH)}
    assert {d.label for d in export.destinations(settings)} == labels
    everything = stored_text(db) + caplog.text
    assert "ConnectionError" in everything and "gave_up" in caplog.text  # the failures were stored and logged
    assert "HIDDEN" not in everything, everything


def test_settings_command_masks_webhook_and_sheets_paths(env):
    variables = {**os.environ, **env, "TELEMETRY_EXPORT_WEBHOOK_URLS": f"https://hooks.slack.com{SECRET_PATH}",
                 "GOOGLE_SHEETS_API_URL": "https://script.google.com/macros/s/AKfyHIDDENSCRIPT/exec",
                 "GOOGLE_SHEETS_API_ENABLED": "true"}
    out = subprocess.run([sys.executable, "-m", "console", "settings"], cwd=ROOT, env=variables,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "https://hooks.slack.com/***" in out.stdout and "https://script.google.com/***" in out.stdout
    assert "HIDDEN" not in out.stdout + out.stderr


@pytest.mark.parametrize("code", [307, 308, 301])
def test_a_redirect_that_would_resend_the_run_is_not_followed(db, make_settings, servers, code):
    thief = servers(200)
    hook = servers(code, location=f"{thief.origin}/collect")
    settings = make_settings(TELEMETRY_EXPORT_WEBHOOK_URLS=f"{hook.origin}/hook",
                             TELEMETRY_EXPORT_WEBHOOK_TOKEN="tok-SECRET")
    (state,) = one_run_exported(db, settings)
    assert len(hook.received) == 1
    assert thief.received == []  # neither the body nor the token went to Location
    assert (state["state"], state["last_status"]) == ("rejected", code)
    assert "not followed" in state["last_error"]


@pytest.mark.parametrize("code", [302, 303])
def test_a_302_or_303_after_the_post_counts_as_delivered(db, make_settings, servers, code):
    result_page = servers(200)
    apps_script = servers(code, location=f"{result_page.origin}/macros/echo")
    settings = make_settings(GOOGLE_SHEETS_API_ENABLED="true", GOOGLE_SHEETS_API_URL=f"{apps_script.origin}/exec",
                             GOOGLE_SHEETS_API_TOKEN="sheet-SECRET")
    (state,) = one_run_exported(db, settings)
    assert [(method, path) for method, path, _ in apps_script.received] == [("POST", "/exec")]
    assert b"sheet-SECRET" in apps_script.received[0][2]
    assert result_page.received == []  # nothing is re-sent, not even a GET with the token
    assert (state["state"], state["last_status"]) == ("posted", code)


def test_the_migration_cuts_labels_stored_with_their_path(tmp_path):
    from console.core.settings import load_settings
    from console.store import migrate

    settings = load_settings({"TELEMETRY_DB_PATH": str(tmp_path / "t.sqlite"), "TELEMETRY_BASE_DIR": str(tmp_path)})
    migrate.upgrade(settings, "0013")
    engine = sa.create_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(export_destinations.insert(), [
                {"destination": "webhook:a", "kind": "webhook", "label": f"https://hooks.slack.com{SECRET_PATH}",
                 "first_configured_at": utcnow()},
                {"destination": "sheets", "kind": "sheets", "label": "https://script.google.com:8443/macros/s/HIDDEN",
                 "first_configured_at": utcnow()},
            ])
        migrate.upgrade(settings)
        with engine.connect() as conn:
            labels = dict(conn.execute(sa.select(export_destinations.c.destination, export_destinations.c.label)).all())
    finally:
        engine.dispose()
    assert labels == {"webhook:a": "https://hooks.slack.com", "sheets": "https://script.google.com:8443"}
