"""Safe on a network by default, through the real `serve`.

Docker publishes on loopback unless told; `serve` warns when it listens beyond loopback
with auth off; /health says whether auth is on; a console on loopback answers only
localhost names (DNS rebinding); API writes from another site's page are refused.
"""

from __future__ import annotations

import re
import uuid

import pytest
import requests
import yaml

from tests.helpers import ROOT, ConsoleProcess, free_port
from tests.security.conftest import dump_store, run_body

TOKEN = "net-operator-token-5e2a"
WARNING = "SECURITY: listening on"


@pytest.fixture(params=["sqlite"])
def backend(request) -> str:  # Host and Origin rules do not depend on the database
    return request.param


def serve(env, tmp_path, **extra) -> ConsoleProcess:
    process = ConsoleProcess({**env, "TELEMETRY_API_PORT": str(free_port()), **extra},
                             tmp_path / f"console-{uuid.uuid4().hex[:6]}.log")
    process.start()
    return process


def compose_default(value: str) -> str:
    """`${VAR:-default}` as docker compose reads it with VAR unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_docker_compose_publishes_the_console_on_loopback_unless_told():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    ports = compose["services"]["console"]["ports"]
    assert len(ports) == 1
    published = compose_default(str(ports[0]))
    assert published == "127.0.0.1:8765:8765", published
    assert "${TELEMETRY_PUBLISH" in ports[0]  # and one variable widens it
    environment = compose["services"]["console"]["environment"]
    assert compose_default(environment["TELEMETRY_API_AUTH_ENABLED"]) == "false"
    assert {"TELEMETRY_OPERATOR_TOKENS", "TELEMETRY_AGENT_TOKENS"} <= set(environment)


def test_serve_warns_beyond_loopback_with_auth_off_and_health_shows_auth(env, tmp_path):
    wide_open = serve(env, tmp_path, TELEMETRY_API_HOST="0.0.0.0")
    try:
        health = requests.get(wide_open.url + "/health", timeout=10).json()
        assert health["auth"] == {"writes": False, "reads": False}
        log = wide_open.log()
        assert f"{WARNING} 0.0.0.0:{wide_open.port}" in log and "auth off" in log
    finally:
        wide_open.stop()

    closed = serve(env, tmp_path, TELEMETRY_API_HOST="0.0.0.0", TELEMETRY_API_AUTH_ENABLED="true",
                   TELEMETRY_OPERATOR_TOKENS=TOKEN, TELEMETRY_API_AUTH_READS="true")
    try:
        health = requests.get(closed.url + "/health", timeout=10).json()
        assert health["auth"] == {"writes": True, "reads": True}
        assert WARNING not in closed.log()
    finally:
        closed.stop()

    loopback = serve(env, tmp_path)
    try:
        assert requests.get(loopback.url + "/health", timeout=10).json()["auth"]["writes"] is False
        assert WARNING not in loopback.log()
        schema = requests.get(loopback.url + "/openapi.json", timeout=10).json()
        health_schema = schema["components"]["schemas"]["HealthOut"]
        assert "auth" in health_schema["required"]
    finally:
        loopback.stop()


REBINDING_HOSTS = ["evil.example", "evil.example:8765", "127.0.0.1.nip.io", "localhost.evil.example",
                   "attacker", "", "10.0.0.5", "[::ffff:8.8.8.8]"]
LOOPBACK_HOSTS = ["localhost", "LOCALHOST:1", "127.0.0.1", "127.0.0.1:8765", "127.9.9.9", "[::1]", "[::1]:8765"]


def post_run(url: str, host: str | None = None, **headers):
    if host is not None:
        headers["Host"] = host
    return requests.post(url + "/api/v1/runs", json=run_body(), headers=headers, timeout=10)


def test_a_console_on_loopback_answers_only_localhost_names(env, tmp_path, db_for):
    console = serve(env, tmp_path)
    db = db_for(env)
    try:
        before = dump_store(db)
        for host in REBINDING_HOSTS:
            for path in ("/api/v1/runs", "/", "/health", "/login"):
                resp = requests.get(console.url + path, headers={"Host": host}, timeout=10)
                assert resp.status_code == 400, (host, path, resp.status_code)
                if path.startswith("/api/"):
                    assert "TELEMETRY_ALLOWED_HOSTS" in resp.json()["detail"]
            resp = post_run(console.url, host)
            assert resp.status_code == 400 and resp.json()["detail"], host
        assert dump_store(db) == before  # nothing a refused Host sent was stored
        for host in LOOPBACK_HOSTS:
            assert requests.get(console.url + "/api/v1/runs", headers={"Host": host}, timeout=10).status_code == 200
            assert post_run(console.url, host).status_code == 201, host
    finally:
        console.stop()


def test_allowed_hosts_lists_names_explicitly_and_star_allows_any(env, tmp_path):
    listed = serve(env, tmp_path, TELEMETRY_ALLOWED_HOSTS="console.internal, telemetry")
    try:
        for host, status in [("console.internal", 200), ("telemetry:8765", 200), ("localhost", 200),
                             ("evil.example", 400)]:
            assert requests.get(listed.url + "/api/v1/runs", headers={"Host": host}, timeout=10).status_code == status
    finally:
        listed.stop()
    star = serve(env, tmp_path, TELEMETRY_ALLOWED_HOSTS="*")
    try:
        assert requests.get(star.url + "/api/v1/runs", headers={"Host": "evil.example"}, timeout=10).status_code == 200
    finally:
        star.stop()


def test_a_console_beyond_loopback_answers_any_name_unless_listed(env, tmp_path):
    wide = serve(env, tmp_path, TELEMETRY_API_HOST="0.0.0.0")
    try:
        for host in ("telemetry", "console.internal:8765", "10.0.0.5"):
            assert post_run(wide.url, host).status_code == 201, host
    finally:
        wide.stop()
    listed = serve(env, tmp_path, TELEMETRY_API_HOST="0.0.0.0", TELEMETRY_ALLOWED_HOSTS="telemetry")
    try:
        assert post_run(listed.url, "telemetry").status_code == 201
        assert post_run(listed.url, "evil.example").status_code == 400
        assert post_run(listed.url, "127.0.0.1").status_code == 201  # health checks, local scripts
    finally:
        listed.stop()


CROSS_SITE = [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://localhost:3000"},  # another program on this machine
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"},
]


def test_api_writes_from_another_sites_page_are_refused_and_curl_still_works(env, tmp_path, db_for):
    console = serve(env, tmp_path)
    db = db_for(env)
    try:
        created = post_run(console.url)
        assert created.status_code == 201
        event_id = created.json()["event_id"]
        before = dump_store(db)
        for headers in CROSS_SITE:
            for method, path, kwargs in [
                ("POST", "/api/v1/runs", {"json": run_body()}),
                ("POST", f"/api/v1/runs/{event_id}/heartbeat", {"data": b""}),  # no content type needed
                ("POST", "/api/v1/ingest", {"data": b"[]", "headers": {"Content-Type": "text/plain"}}),
                ("PATCH", f"/api/v1/runs/{event_id}", {"json": {"status": "failure"}}),
                ("DELETE", f"/api/v1/runs/{event_id}", {}),
                ("POST", "/api/v1/runs/mark-failed", {"json": {"event_ids": [event_id]}}),
            ]:
                sent = {**kwargs.pop("headers", {}), **headers}
                resp = requests.request(method, console.url + path, headers=sent, timeout=10, **kwargs)
                assert resp.status_code == 403, (headers, method, path, resp.status_code)
                assert "cross-site" in resp.json()["detail"]
        assert dump_store(db) == before
        # The console's own origin, a navigation (`none`), and clients without those headers pass.
        own = {"Origin": console.url, "Sec-Fetch-Site": "same-origin"}
        assert requests.post(console.url + f"/api/v1/runs/{event_id}/heartbeat", headers=own,
                             timeout=10).status_code == 200
        assert post_run(console.url, None, **{"Sec-Fetch-Site": "none"}).status_code == 201
        assert requests.post(console.url + f"/api/v1/runs/{event_id}/heartbeat", timeout=10).status_code == 200
        # Reads are not writes: another site cannot read the answer anyway (no CORS headers).
        resp = requests.get(console.url + "/api/v1/runs", headers={"Origin": "http://evil.example"}, timeout=10)
        assert resp.status_code == 200 and "Access-Control-Allow-Origin" not in resp.headers
    finally:
        console.stop()
