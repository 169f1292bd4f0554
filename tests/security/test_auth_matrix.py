"""Every route of the app (from its url_map, so a new route is covered by itself) ×
auth off / on (reads open) / on (reads closed) × no token / wrong token / right token /
logged-in page session.

API writes need the bearer token whenever auth is on — a page session is not enough
(that would make the JSON API forgeable from another site); API reads need it only with
TELEMETRY_API_AUTH_READS; /health, /metrics, /version are always open; pages need a
login whenever auth is on, and a bearer header is not a login. Unauthorised requests
change nothing in the store. Every response carries the security headers.
"""

from __future__ import annotations

import re

import pytest

from console.app import create_app
from console.core.settings import load_settings
from tests.security.conftest import dump_store, run_body

TOKEN = "matrix-token-7c1d9e"
ALWAYS_OPEN = {"/health", "/metrics", "/version"}
PAGE_OPEN = {"web.login", "web.htmx_js"}
CREDENTIALS = ("none", "wrong", "token", "session")


@pytest.fixture(params=["sqlite"])
def backend(request) -> str:  # the rules do not depend on the database
    return request.param


def make(env, **extra):
    settings = load_settings({**env, **extra})
    app = create_app(settings, {"TESTING": True})
    return app


def seed(client, headers) -> str:
    body = run_body()
    resp = client.post("/api/v1/runs", json=body, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    return body["event_id"]


def concrete(rule, event_id: str) -> str:
    values = {"event_id": event_id, "field": "agent_name", "name": "retention", "filename": "console.css"}
    path = rule.rule
    for arg in rule.arguments:
        value = values.get(arg, "x")
        if rule.endpoint == "api_root.docs_assets":
            value = "swagger-ui.css"
        if re.search(rf"<int:{arg}>", path):
            value = "1"  # an id of a row that need not exist: the route is reached, then 404
        path = re.sub(rf"<(?:\w+:)?{arg}>", value, path)
    return path


def log_in(client) -> None:
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = client.post("/login", data={"username": "", "password": TOKEN, "csrf_token": csrf})
    assert resp.status_code == 303, resp.get_data(as_text=True)[:300]


def client_for(app, credential: str):
    client = app.test_client()
    headers = {}
    if credential == "wrong":
        headers["Authorization"] = "Bearer not-the-token"
    elif credential == "token":
        headers["Authorization"] = f"Bearer {TOKEN}"
    elif credential == "session":
        log_in(client)
    return client, headers


def body_for(method: str, path: str) -> dict | list | None:
    if method == "GET":
        return None
    if path.endswith("/ingest"):
        return []
    if path.endswith("/batch"):
        return [run_body()]
    if path == "/api/v1/runs":
        return run_body()
    return {}


def expectation(app, rule, method: str, auth: str, credential: str) -> str:
    """What must happen: `open`, `deny_api` (401), `login` (redirect to the login page)."""
    view = app.view_functions[rule.endpoint]
    mode = getattr(view, "telemetry_auth", None)
    path = rule.rule
    if auth == "off" or path in ALWAYS_OPEN:
        return "open"
    if rule.endpoint.startswith("web.") or rule.endpoint == "static":
        if rule.endpoint in PAGE_OPEN or rule.endpoint == "static":
            return "open"
        return "open" if credential == "session" else "login"
    if mode is None:  # /docs, /openapi.json: reads of the API's description, open to a page login too
        mode = "read"
        if credential == "session":
            return "open"
    if mode == "write" or (mode == "read" and auth == "reads-closed"):
        return "open" if credential == "token" else "deny_api"
    return "open"


def check_headers(resp, failures, where):
    if resp.headers.get("X-Content-Type-Options") != "nosniff":
        failures.append(f"{where}: X-Content-Type-Options missing")
    csp = resp.headers.get("Content-Security-Policy", "")
    directives = {part.strip() for part in csp.split(";")}
    locked = {"default-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'",
              "object-src 'none'"}
    if not locked <= directives:
        failures.append(f"{where}: CSP {csp!r} lacks {sorted(locked - directives)}")
    if resp.headers.get("Referrer-Policy") != "same-origin":
        failures.append(f"{where}: Referrer-Policy {resp.headers.get('Referrer-Policy')!r}")
    if "script-src" in csp and "'unsafe-inline'" in csp.split("script-src", 1)[1].split(";")[0]:
        failures.append(f"{where}: inline scripts allowed by CSP")


@pytest.mark.parametrize("auth", ["off", "on", "reads-closed"])
def test_every_route_times_every_credential_is_allowed_or_denied_as_documented(auth, env):
    extra = {}
    if auth != "off":
        extra = {"TELEMETRY_API_AUTH_ENABLED": "true", "TELEMETRY_API_AUTH_TOKEN": f"older-token,{TOKEN}"}
    if auth == "reads-closed":
        extra["TELEMETRY_API_AUTH_READS"] = "true"
    app = make(env, **extra)
    db = app.extensions["telemetry_db"]
    failures: list[str] = []
    checked = 0
    try:
        rules = [r for r in app.url_map.iter_rules()]
        assert len(rules) >= 30
        for credential in CREDENTIALS:
            if credential == "session" and auth == "off":
                continue  # no login without auth
            admin, admin_headers = client_for(app, "token")
            event_id = seed(admin, admin_headers)
            client, headers = client_for(app, credential)
            before = dump_store(db)
            changed_by_denied = []
            for rule in rules:
                path = concrete(rule, event_id)
                for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                    expected = expectation(app, rule, method, auth, credential)
                    if method != "GET" and expected != "open":
                        snapshot = dump_store(db)
                    resp = client.open(path, method=method, json=body_for(method, path), headers=headers)
                    where = f"{auth}/{credential} {method} {path} -> {resp.status_code}"
                    checked += 1
                    check_headers(resp, failures, where)
                    if resp.status_code >= 500:
                        failures.append(f"{where}: server error")
                    elif expected == "deny_api":
                        if resp.status_code != 401 or resp.headers.get("WWW-Authenticate") != "Bearer":
                            failures.append(f"{where}: expected 401 + WWW-Authenticate")
                        elif not resp.is_json or not resp.get_json().get("detail"):
                            failures.append(f"{where}: 401 without a JSON detail")
                    elif expected == "login":
                        if resp.status_code != 303 or not resp.headers.get("Location", "").startswith("/login"):
                            failures.append(f"{where}: expected a redirect to the login")
                    elif resp.status_code == 401 or resp.headers.get("Location", "").startswith("/login"):
                        failures.append(f"{where}: denied, but documented as open")
                    if method != "GET" and expected != "open" and dump_store(db) != snapshot:
                        changed_by_denied.append(where)
                    if method == "DELETE" and resp.status_code == 204:
                        event_id = seed(admin, admin_headers)  # the next routes need a run
            if changed_by_denied:
                failures.append(f"denied requests changed the store: {changed_by_denied}")
            if credential in ("none", "wrong") and auth != "off":
                assert dump_store(db) == before, "an unauthenticated sweep changed the store"
    finally:
        db.dispose()
    assert not failures, "\n".join(failures)
    assert checked > 40


def test_csrf_is_enforced_on_every_state_changing_page_route(env):
    """With auth off (the console still changes data) and on: no token, a wrong one, another session's."""
    for auth in ("off", "on"):
        extra = {"TELEMETRY_API_AUTH_ENABLED": "true", "TELEMETRY_API_AUTH_TOKEN": TOKEN} if auth == "on" else {}
        app = make(env, **extra)
        db = app.extensions["telemetry_db"]
        try:
            admin, admin_headers = client_for(app, "token")
            event_id = seed(admin, admin_headers)
            other, _ = client_for(app, "session" if auth == "on" else "none")
            other.get(f"/runs/{event_id}")  # a page with forms: gets its own CSRF token
            with other.session_transaction() as s:
                foreign = s.get("csrf") or "x"
            client, _ = client_for(app, "session" if auth == "on" else "none")
            client.get(f"/runs/{event_id}")
            posts = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("web.")
                     and r.methods & {"POST", "PUT", "PATCH", "DELETE"} and r.endpoint != "web.login"]
            assert {r.endpoint for r in posts} >= {"web.logout", "web.stale_mark_failed", "web.run_set_status",
                                                   "web.run_link_commit", "web.run_delete"}
            before = dump_store(db)
            for rule in posts:
                path = concrete(rule, event_id)
                form = {"status": "failure", "reason": "csrf", "commit_hash": "abcdef1", "commit_source": "manual",
                        "confirm": "yes", "event_id": event_id, "older_than_minutes": "0"}
                for token in (None, "wrong", foreign):
                    data = dict(form) if token is None else {**form, "csrf_token": token}
                    resp = client.post(path, data=data)
                    assert resp.status_code == 400, (auth, path, token, resp.status_code)
                    assert "CSRF" in resp.get_data(as_text=True)
                    resp = client.post(path, data=form, headers={"X-CSRF-Token": token or ""})
                    assert resp.status_code == 400, (auth, path, "header", token, resp.status_code)
            assert dump_store(db) == before
            # With the session's own token the same form goes through (the check is not a blanket refusal).
            with client.session_transaction() as s:
                mine = s["csrf"]
            resp = client.post(f"/runs/{event_id}/status", data={"status": "failure", "reason": "ok",
                                                                 "csrf_token": mine})
            assert resp.status_code in (200, 303), resp.get_data(as_text=True)[:300]
        finally:
            db.dispose()


def test_login_itself_needs_csrf_and_the_cookie_is_httponly_samesite_and_secure_when_asked(env):
    app = make(env, TELEMETRY_API_AUTH_ENABLED="true", TELEMETRY_API_AUTH_TOKEN=TOKEN, TELEMETRY_COOKIE_SECURE="true")
    try:
        client = app.test_client()
        resp = client.post("/login", data={"username": "", "password": TOKEN})
        assert resp.status_code == 400  # a login form posted from another site
        page = client.get("/login").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        resp = client.post("/login", data={"username": "", "password": TOKEN, "csrf_token": csrf})
        assert resp.status_code == 303
        cookie = next(v for k, v in resp.headers.items() if k == "Set-Cookie" and v.startswith("session="))
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert "httponly" in flags and "samesite=lax" in flags and "secure" in flags, cookie
        assert TOKEN not in cookie  # the session holds a fingerprint, never the token
    finally:
        app.extensions["telemetry_db"].dispose()


def test_a_rotated_token_ends_the_sessions_that_used_it(env, tmp_path):
    app = make(env, TELEMETRY_API_AUTH_ENABLED="true", TELEMETRY_API_AUTH_TOKEN=TOKEN)
    client = app.test_client()
    log_in(client)
    assert client.get("/").status_code == 200
    app.config["SETTINGS"] = load_settings({**env, "TELEMETRY_API_AUTH_ENABLED": "true",
                                            "TELEMETRY_API_AUTH_TOKEN": "a-new-token"})
    resp = client.get("/")
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/login")
    app.extensions["telemetry_db"].dispose()
