"""No secret leaks; tokens compared in constant time; the rate limit trusts a proxy only when told.

Secrets: the API token, the database URL's password, the export webhook token and
secret, the session secret key. None may appear in any page, API answer, /health,
/metrics, /version, /openapi.json, error, `console settings` output or log line.
"""

from __future__ import annotations

import ast
import hmac
import inspect
import io
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

import console.domain.users
import console.http.auth
import console.web.auth
from console.app import create_app
from console.core.settings import load_settings
from tests.helpers import ROOT, ConsoleProcess, free_port
from tests.security.conftest import run_body

TOKEN = "tok-SECRET-4f1e8a9b"
DB_PASSWORD = "pg-SECRET-77aa01"
WEBHOOK_TOKEN = "hook-SECRET-0c0c"
WEBHOOK_SECRET = "hmac-SECRET-9d9d"
SECRET_KEY = "cookie-SECRET-1234"
SECRETS = (TOKEN, DB_PASSWORD, WEBHOOK_TOKEN, WEBHOOK_SECRET, SECRET_KEY)


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def secret_env(env: dict[str, str]) -> dict[str, str]:
    url = sa.engine.make_url(env["TELEMETRY_DATABASE_URL"]).set(password=DB_PASSWORD)  # trust auth ignores it
    return {**env, "TELEMETRY_DATABASE_URL": url.render_as_string(hide_password=False),
            "TELEMETRY_API_AUTH_ENABLED": "true", "TELEMETRY_API_AUTH_TOKEN": TOKEN,
            "TELEMETRY_EXPORT_WEBHOOK_URLS": "http://127.0.0.1:9/hook", "TELEMETRY_EXPORT_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "TELEMETRY_EXPORT_WEBHOOK_SECRET": WEBHOOK_SECRET, "TELEMETRY_SECRET_KEY": SECRET_KEY,
            "TELEMETRY_LOG_LEVEL": "DEBUG"}


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_no_secret_in_any_answer_or_log_line_of_the_real_console(env, tmp_path):
    env = secret_env(env)
    console = ConsoleProcess({**env, "TELEMETRY_API_PORT": str(free_port())}, tmp_path / "console.log")
    console.start()
    answers: list[str] = []
    try:
        base = console.url
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = run_body(error_details="boom")
        calls = [
            ("GET", "/health", {}, None), ("GET", "/version", {}, None), ("GET", "/metrics", {}, None),
            ("GET", "/metrics", {"Accept": "text/plain"}, None), ("GET", "/openapi.json", {}, None),
            ("GET", "/docs", {}, None), ("POST", "/api/v1/runs", {}, body),
            ("POST", "/api/v1/runs", {"Authorization": "Bearer wrong-" + TOKEN[::-1]}, body),
            ("POST", "/api/v1/runs", auth, body), ("POST", "/api/v1/runs", auth, body),
            ("POST", "/api/v1/runs", auth, {"event_id": "x"}), ("GET", "/api/v1/runs?status=bogus", auth, None),
            ("GET", "/api/v1/runs/missing", auth, None), ("GET", "/api/v1/runs?limit=0", auth, None),
            ("POST", "/api/v1/ingest", {**auth, "Content-Type": "application/json"}, b"not json"),
            ("POST", "/api/v1/runs/batch", {**auth, "Content-Type": "application/json"}, b"[" + b" " * 11_000_000 + b"]"),
            ("GET", "/", {}, None), ("GET", "/login", {}, None), ("GET", "/nope", {}, None),
            ("GET", "/api/v1/nope", {}, None),
        ]
        for method, path, headers, payload in calls:
            kwargs = {"data": payload} if isinstance(payload, bytes) else {"json": payload}
            resp = requests.request(method, base + path, headers=headers, timeout=60, allow_redirects=False, **kwargs)
            answers.append(f"{method} {path} {resp.status_code} {dict(resp.headers)} {resp.text}")
        # Logged in with the token, every page.
        session = requests.Session()
        login = session.get(base + "/login", timeout=10).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
        resp = session.post(base + "/login", data={"username": "", "password": TOKEN, "csrf_token": csrf}, timeout=10)
        assert resp.ok and "/login" not in resp.url, "login with the token failed"
        answers.append(str(session.cookies.get_dict()))
        for path in ("/", "/stale", "/agents", "/jobs", f"/runs/{body['event_id']}", "/runs/counts"):
            resp = session.get(base + path, timeout=10)
            assert resp.status_code == 200, (path, resp.status_code)
            answers.append(f"{path} {resp.text}")
    finally:
        console.stop()
    log = console.log_path.read_text(errors="replace")
    assert "Traceback" not in log
    for answer in answers:
        assert not leaks(answer), (leaks(answer), answer[:500])
    assert not leaks(log), [line for line in log.splitlines() if leaks(line)][:5]
    settings_out = subprocess.run([sys.executable, "-m", "console", "settings"], cwd=ROOT, capture_output=True,
                                  text=True, env={**console.env}, timeout=60)
    assert settings_out.returncode == 0, settings_out.stderr
    assert "TELEMETRY_DATABASE_URL" in settings_out.stdout
    assert not leaks(settings_out.stdout + settings_out.stderr), settings_out.stdout


def test_a_database_that_cannot_be_reached_answers_503_without_its_password(tmp_path):
    dead = f"postgresql+psycopg://telemetry:{DB_PASSWORD}@127.0.0.1:{free_port()}/telemetry"
    settings = load_settings({"TELEMETRY_DATABASE_URL": dead, "TELEMETRY_BASE_DIR": str(tmp_path),
                              "TELEMETRY_SECRET_KEY": SECRET_KEY, "TELEMETRY_LOG_LEVEL": "DEBUG"})
    app = create_app(settings, {"TESTING": True})
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("console")
    logger.addHandler(handler)
    try:
        client = app.test_client()
        for method, path, body in [("GET", "/health", None), ("GET", "/version", None), ("GET", "/metrics", None),
                                   ("GET", "/api/v1/runs", None), ("POST", "/api/v1/runs", run_body()),
                                   ("POST", "/api/v1/ingest", []), ("GET", "/", None), ("GET", "/stale", None)]:
            resp = client.open(path, method=method, json=body)
            text = resp.get_data(as_text=True)
            # /health and /version are liveness: they may stay 200 (see docs/reliability.md); an empty ingest is 200.
            allowed = (503, 200) if path in ("/health", "/version", "/api/v1/ingest") else (503,)
            assert resp.status_code in allowed, (path, resp.status_code, text[:300])
            assert not leaks(text + str(resp.headers)), (path, text[:300])
            if resp.status_code == 503:
                assert resp.headers.get("Retry-After"), path
    finally:
        logger.removeHandler(handler)
        app.extensions["telemetry_db"].dispose()
    assert not leaks(stream.getvalue()), stream.getvalue()[-2000:]


def test_the_sdk_never_logs_its_token(tmp_path, caplog):
    from telemetry import TelemetryConfig
    from telemetry.sender import Sender

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "events_20260101.ndjson").write_bytes(b'{"v":1,"id":"a","kind":"heartbeat"}\n')
    with caplog.at_level(logging.DEBUG, logger="telemetry"):
        sender = Sender(raw, f"http://127.0.0.1:{free_port()}", token=TOKEN, http_timeout=0.5)
        sender._hold_lock()
        sender.deliver_once()
        sender.release_lock()
    config = TelemetryConfig(api_token=TOKEN)
    assert TOKEN not in caplog.text and TOKEN not in repr(config) and TOKEN not in str(config)
    assert TOKEN not in (raw / "cursor.json").read_text()


# ---------------------------------------------------------------- constant time


def test_tokens_csrf_and_fingerprints_are_compared_with_hmac_compare_digest():
    """Code level: every comparison involving a token, password, fingerprint or CSRF value is compare_digest."""
    suspicious = re.compile(r"token|password|secret|csrf|fingerprint|digest|fp\b|expected|sent|given", re.I)
    for module in (console.http.auth, console.web.auth, console.domain.users):
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
                text = ast.unparse(node)
                if suspicious.search(text) and not re.search(r"kind|method|getpass", text):  # getpass: typed twice
                    pytest.fail(f"{module.__name__}: plain comparison of a secret: {text}")
    assert "compare_digest" in inspect.getsource(console.web.auth.check_csrf)
    assert "compare_digest" in inspect.getsource(console.http.auth.identify_token)


def test_token_matching_tries_every_configured_token_whatever_matches(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(console.http.auth.hmac, "compare_digest", counting)
    tokens = ("first-token", "second-token", "third-token")
    settings = load_settings({"TELEMETRY_API_AUTH_TOKEN": ",".join(tokens)})
    for presented in ("first-token", "third-token", "nothing-like-it", ""):
        calls.clear()
        console.http.auth.identify_token(presented, settings)
        assert len(calls) == len(tokens), presented  # no early exit: time does not tell which one matched


def test_passwords_are_stored_as_slow_salted_hashes():
    source = inspect.getsource(console.domain.users)
    assert re.search(r"scrypt|pbkdf2|argon2|bcrypt|generate_password_hash", source), "password hashing scheme"
    assert "compare_digest" in source or "check_password_hash" in source


# ---------------------------------------------------------------- rate limit behind a proxy


@pytest.fixture(params=["sqlite"])
def backend(request) -> str:
    return request.param


def limited_client(env, trusted: int):
    settings = load_settings({**env, "TELEMETRY_RATE_LIMIT_ENABLED": "true", "TELEMETRY_RATE_LIMIT_RPM": "3",
                              "TELEMETRY_TRUSTED_PROXIES": str(trusted)})
    app = create_app(settings, {"TESTING": True})
    return app, app.test_client()


def hits(client, remote: str, forwarded: str | None) -> list[int]:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return [client.get("/api/v1/runs?limit=1", headers=headers, environ_base={"REMOTE_ADDR": remote}).status_code
            for _ in range(4)]


def test_without_trusted_proxies_a_forged_x_forwarded_for_does_not_escape_the_limit(env):
    app, client = limited_client(env, 0)
    try:
        codes = [client.get("/api/v1/runs?limit=1", headers={"X-Forwarded-For": f"203.0.113.{i}"},
                            environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code for i in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429], codes
        assert hits(client, "198.51.100.8", None)[:3] == [200, 200, 200]  # another socket address: its own bucket
    finally:
        app.extensions["telemetry_db"].dispose()


def test_with_one_trusted_proxy_the_limit_is_per_forwarded_client(env):
    app, client = limited_client(env, 1)
    try:
        # All requests come from the proxy's socket address; the proxy appends the real client.
        assert hits(client, "10.0.0.1", "203.0.113.1") == [200, 200, 200, 429]
        assert hits(client, "10.0.0.1", "203.0.113.2") == [200, 200, 200, 429]
        # A client forging its own X-Forwarded-For: the proxy appends the real address, which counts.
        assert hits(client, "10.0.0.1", "198.18.0.9, 203.0.113.1")[0] == 429
        resp = client.get("/health", environ_base={"REMOTE_ADDR": "10.0.0.1"}, headers={"X-Forwarded-For": "203.0.113.1"})
        assert resp.status_code == 200  # /health is never limited
    finally:
        app.extensions["telemetry_db"].dispose()


def test_through_real_gunicorn_a_forged_header_does_not_escape_the_limit(sqlite_template, tmp_path):
    path = tmp_path / "db" / "telemetry.sqlite"
    path.parent.mkdir(parents=True)
    path.write_bytes(Path(sqlite_template).read_bytes())
    console = ConsoleProcess({"TELEMETRY_DB_PATH": str(path), "TELEMETRY_SECRET_KEY": "x",
                              "TELEMETRY_RATE_LIMIT_ENABLED": "true", "TELEMETRY_RATE_LIMIT_RPM": "3",
                              "TELEMETRY_API_PORT": str(free_port())}, tmp_path / "console.log")
    console.start()
    try:
        codes = [requests.get(console.url + "/api/v1/runs?limit=1", headers={"X-Forwarded-For": f"203.0.113.{i}"},
                              timeout=10).status_code for i in range(5)]
    finally:
        console.stop()
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429], codes
