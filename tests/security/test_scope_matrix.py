"""Least privilege for agents, through the real `serve`: every route of the app (from its
url_map, so a new route is covered by itself) × no token / agent / operator / legacy token.

Agent tokens (TELEMETRY_AGENT_TOKENS) only record — the routes in RECORDING below — and
read; every other write (deletes, mark-failed, and any route added later that does not
declare `scope="agent"`) needs an operator token (TELEMETRY_OPERATOR_TOKENS) or the older
TELEMETRY_API_AUTH_TOKEN, which keeps all it allowed. An agent token there is a 403 with a
detail and changes nothing; operators' deletes and bulk marks are audited with a label of
the token, never the token.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests
import sqlalchemy as sa

from console.app import create_app
from console.core.settings import load_settings
from console.store.models import audit_log
from tests.helpers import ROOT, ConsoleProcess, free_port
from tests.security.conftest import dump_store, run_body
from tests.security.test_auth_matrix import body_for, concrete

AGENT = "agent-token-3b9c"
OPERATOR = "operator-token-8d2f"
LEGACY = "legacy-token-1a7e"
CREDENTIALS = {"none": None, "agent": AGENT, "operator": OPERATOR, "legacy": LEGACY}
# What the issue lists as recording: create and update runs, batch, ingest, events,
# heartbeats, associate commits (and the two link reads that sit with writes).
RECORDING = {"api.create_run", "api.create_runs_batch", "api.update_run", "api.ingest_lines", "api.post_events",
             "api.post_heartbeat", "api.associate_commit", "api.commit_url", "api.repo_url"}
ALWAYS_OPEN = {"/health", "/metrics", "/version"}
PAGE_OPEN = {"web.login", "web.htmx_js", "static"}


def expected(rule, method: str, mode, credential: str) -> str:
    """`ok`, `401`, `403` or `login` for this route, method and credential (reads closed)."""
    if rule.rule in ALWAYS_OPEN or rule.endpoint in PAGE_OPEN:
        return "ok"
    if rule.endpoint.startswith("web."):
        return "login"  # a bearer header is not a page login
    if credential == "none":
        return "401"
    if mode in (None, "read") and method == "GET":
        return "ok"  # any token reads
    if rule.endpoint in RECORDING or credential != "agent":
        return "ok"
    return "403"


def test_every_route_times_every_kind_of_token(env, tmp_path, db_for):
    auth_env = {**env, "TELEMETRY_API_AUTH_ENABLED": "true", "TELEMETRY_API_AUTH_READS": "true",
                "TELEMETRY_AGENT_TOKENS": f"agent-other,{AGENT}", "TELEMETRY_OPERATOR_TOKENS": OPERATOR,
                "TELEMETRY_API_AUTH_TOKEN": LEGACY}
    app = create_app(load_settings(auth_env), {"TESTING": True})
    app.extensions["telemetry_db"].dispose()
    rules = list(app.url_map.iter_rules())
    assert len(rules) >= 40
    console = ConsoleProcess({**auth_env, "TELEMETRY_API_PORT": str(free_port())}, tmp_path / "console.log")
    console.start()
    db = db_for(auth_env)
    failures: list[str] = []
    counts = {"ok": 0, "401": 0, "403": 0, "login": 0}

    def seed() -> str:
        body = run_body()
        resp = requests.post(console.url + "/api/v1/runs", json=body, timeout=10,
                             headers={"Authorization": f"Bearer {AGENT}"})
        assert resp.status_code == 201, resp.text
        return body["event_id"]

    try:
        event_id = seed()
        for credential, token in CREDENTIALS.items():
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            for rule in rules:
                path = concrete(rule, event_id)
                mode = getattr(app.view_functions[rule.endpoint], "telemetry_auth", None)
                for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                    want = expected(rule, method, mode, credential)
                    counts[want] += 1
                    before = dump_store(db) if want in ("401", "403") and method != "GET" else None
                    resp = requests.request(method, console.url + path, json=body_for(method, path),
                                            headers=headers, timeout=30, allow_redirects=False)
                    where = f"{credential} {method} {path} -> {resp.status_code}"
                    got = resp.status_code
                    if got >= 500:
                        failures.append(f"{where}: server error")
                    elif want == "401" and got != 401:
                        failures.append(f"{where}: expected 401")
                    elif want == "403" and (got != 403 or "operator token" not in resp.json().get("detail", "")):
                        failures.append(f"{where}: expected 403 with a detail naming the operator token")
                    elif want == "login" and not (got == 303 and resp.headers["Location"].startswith("/login")):
                        failures.append(f"{where}: expected the login page")
                    elif want == "ok" and got in (401, 403):
                        failures.append(f"{where}: denied, but allowed to {credential}")
                    if before is not None and dump_store(db) != before:
                        failures.append(f"{where}: a refused request changed the store")
                    if method == "DELETE" and got == 204:
                        event_id = seed()
    finally:
        console.stop()
    assert not failures, "\n".join(failures)
    # Every kind of answer was exercised (a matrix of only "ok" would prove nothing).
    assert counts["403"] >= 2 and counts["401"] >= 15 and counts["login"] >= 10, counts


def test_operator_actions_are_audited_with_a_token_label_and_agents_cannot_log_in(env, tmp_path, db_for):
    auth_env = {**env, "TELEMETRY_API_AUTH_ENABLED": "true", "TELEMETRY_AGENT_TOKENS": AGENT,
                "TELEMETRY_OPERATOR_TOKENS": f"operator-other,{OPERATOR}", "TELEMETRY_API_AUTH_TOKEN": LEGACY}
    console = ConsoleProcess({**auth_env, "TELEMETRY_API_PORT": str(free_port())}, tmp_path / "console.log")
    console.start()
    db = db_for(auth_env)
    try:
        ids = []
        for _ in range(3):
            body = run_body(status="running")
            assert requests.post(console.url + "/api/v1/runs", json=body, timeout=10,
                                 headers={"Authorization": f"Bearer {AGENT}"}).status_code == 201
            ids.append(body["event_id"])
        as_operator = {"Authorization": f"Bearer {OPERATOR}"}
        as_legacy = {"Authorization": f"Bearer {LEGACY}"}
        assert requests.delete(f"{console.url}/api/v1/runs/{ids[0]}", headers=as_operator, timeout=10).status_code == 204
        assert requests.delete(f"{console.url}/api/v1/runs/{ids[1]}", headers=as_legacy, timeout=10).status_code == 204
        resp = requests.post(console.url + "/api/v1/runs/mark-failed", json={"event_ids": [ids[2]]},
                             headers=as_operator, timeout=10)
        assert resp.status_code == 200 and resp.json()["count"] == 1
        with db.engine.connect() as conn:
            rows = conn.execute(sa.select(audit_log.c.actor, audit_log.c.action, audit_log.c.event_id)
                                .order_by(audit_log.c.id)).all()
        assert [tuple(r) for r in rows] == [("token:operator#2", "delete_run", ids[0]),
                                            ("token:legacy#1", "delete_run", ids[1]),
                                            ("token:operator#2", "mark_failed", ids[2])]
        dumped = repr(dump_store(db))
        assert OPERATOR not in dumped and LEGACY not in dumped

        # Page login by token: operators yes, agents no.
        for token, status in ((AGENT, 401), (OPERATOR, 303), (LEGACY, 303)):
            session = requests.Session()
            page = session.get(console.url + "/login", timeout=10).text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            resp = session.post(console.url + "/login", data={"username": "", "password": token, "csrf_token": csrf},
                                timeout=10, allow_redirects=False)
            assert resp.status_code == status, (token, resp.status_code)
            if token == OPERATOR:  # a job run from the page, by that login
                page = session.get(console.url + "/jobs", timeout=10).text
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
                assert session.post(console.url + "/jobs/retention/run", data={"csrf_token": csrf}, timeout=10,
                                    allow_redirects=False).status_code == 303
        # A user change from the command line.
        added = subprocess.run([sys.executable, "-m", "console", "user", "add", "carol", "--password-stdin"],
                               input="a long password\n", text=True, capture_output=True, cwd=ROOT,
                               env={**os.environ, **auth_env}, timeout=60)
        assert added.returncode == 0, added.stderr
        with db.engine.connect() as conn:
            rows = conn.execute(sa.select(audit_log.c.actor, audit_log.c.action, audit_log.c.detail)
                                .where(audit_log.c.action.in_(["run_job", "add_user"]))
                                .order_by(audit_log.c.id)).all()
        assert [tuple(r) for r in rows] == [("operator:token:operator#2", "run_job", "retention"),
                                            ("cli", "add_user", "carol")]
    finally:
        console.stop()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_route_that_declares_no_scope_is_closed_to_agents(env):
    """The default is least privilege: a new write route is an operator's until it says otherwise."""
    from flask import Blueprint

    from console.api.spec import OPERATIONS, route

    bp = Blueprint("probe", __name__)

    @route(bp, "/probe/write", "POST", summary="probe", tags=["probe"], responses={200: None}, auth="write")
    def probe_write():
        return {"ok": True}

    OPERATIONS.remove(next(op for op in OPERATIONS if op.path == "/api/v1/probe/write"))
    settings = load_settings({**env, "TELEMETRY_API_AUTH_ENABLED": "true", "TELEMETRY_AGENT_TOKENS": AGENT,
                              "TELEMETRY_OPERATOR_TOKENS": OPERATOR})
    app = create_app(settings, {"TESTING": True})
    app.register_blueprint(bp, url_prefix="/api/v1")
    try:
        client = app.test_client()
        resp = client.post("/api/v1/probe/write", headers={"Authorization": f"Bearer {AGENT}"})
        assert resp.status_code == 403 and "operator token" in resp.get_json()["detail"]
        assert client.post("/api/v1/probe/write", headers={"Authorization": f"Bearer {OPERATOR}"}).status_code == 200
    finally:
        app.extensions["telemetry_db"].dispose()
