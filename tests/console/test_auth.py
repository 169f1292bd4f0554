"""Bearer tokens on the API and the per-address rate limit."""

from __future__ import annotations

import time

from console.core.settings import load_settings
from console.http.auth import RateLimiter, identify_token
from tests.console.conftest import run_body

TOKENS = "old-token,new-token"


def auth_app(make_app, **extra):
    return make_app(TELEMETRY_API_AUTH_ENABLED="true", TELEMETRY_API_AUTH_TOKEN=TOKENS, **extra)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_without_auth_everything_is_open(client):
    assert client.post("/api/v1/runs", json=run_body()).status_code == 201


def test_writes_need_a_token_and_say_so(make_app):
    client = auth_app(make_app).test_client()
    body = run_body()
    for headers in ({}, bearer("wrong"), {"Authorization": "Basic b2xkLXRva2Vu"}, {"Authorization": "Bearer "}):
        response = client.post("/api/v1/runs", json=body, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.get_json()["detail"]
    assert client.get(f"/api/v1/runs/{body['event_id']}").status_code == 404  # nothing stored
    assert client.post("/api/v1/runs", json=body, headers=bearer("new-token")).status_code == 201
    assert client.post("/api/v1/runs", json=body, headers=bearer("old-token")).status_code == 200


def test_every_write_and_the_url_endpoints_are_guarded(make_app):
    client = auth_app(make_app).test_client()
    body = run_body(git_repo="https://github.com/o/r", git_commit_hash="abc1234")
    client.post("/api/v1/runs", json=body, headers=bearer("old-token"))
    event = body["event_id"]
    calls = [
        ("post", "/api/v1/runs/batch", [run_body()]),
        ("patch", f"/api/v1/runs/{event}", {"status": "success"}),
        ("delete", f"/api/v1/runs/{event}", None),
        ("post", f"/api/v1/runs/{event}/associate-commit", {"commit_hash": "abcdef1", "commit_source": "ci"}),
        ("get", f"/api/v1/runs/{event}/commit-url", None),
        ("get", f"/api/v1/runs/{event}/repo-url", None),
    ]
    for method, url, json_body in calls:
        response = getattr(client, method)(url, json=json_body)
        assert response.status_code == 401, url
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert client.get(f"/api/v1/runs/{event}/commit-url", headers=bearer("new-token")).get_json() == {
        "commit_url": "https://github.com/o/r/commit/abc1234"}


def test_reads_stay_open_unless_auth_reads(make_app):
    open_reads = auth_app(make_app).test_client()
    for url in ("/api/v1/runs", "/api/v1/metadata", "/docs", "/openapi.json", "/health", "/version"):
        assert open_reads.get(url).status_code == 200, url
    closed = auth_app(make_app, TELEMETRY_API_AUTH_READS="true").test_client()
    for url in ("/api/v1/runs", "/api/v1/metadata", "/api/v1/metadata/status", "/docs", "/openapi.json"):
        response = closed.get(url)
        assert response.status_code == 401, url
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert closed.get(url, headers=bearer("old-token")).status_code == 200, url
    for url in ("/health", "/version", "/metrics"):
        assert closed.get(url).status_code != 401, url


def test_token_comparison_accepts_any_configured_token():
    two = load_settings({"TELEMETRY_API_AUTH_TOKEN": "a,b"})
    assert identify_token("b", two) == ("legacy", "legacy#2")
    assert identify_token("c", two) is None
    assert identify_token("", load_settings({"TELEMETRY_API_AUTH_TOKEN": "a"})) is None
    assert identify_token("ä", load_settings({"TELEMETRY_API_AUTH_TOKEN": "a"})) is None


def test_over_the_rate_limit_is_429_with_headers(make_app):
    client = make_app(TELEMETRY_RATE_LIMIT_ENABLED="true", TELEMETRY_RATE_LIMIT_RPM="3").test_client()
    remaining = []
    for _ in range(3):
        response = client.get("/api/v1/runs")
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "3"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    limited = client.post("/api/v1/runs", json=run_body())
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert limited.headers["X-RateLimit-Limit"] == "3"
    assert limited.get_json()["detail"]
    for url in ("/health", "/version", "/metrics"):
        assert client.get(url).status_code != 429, url
        assert "X-RateLimit-Limit" not in client.get(url).headers


def test_rate_limit_is_shared_by_the_workers_of_a_host(make_app):
    extra = {"TELEMETRY_RATE_LIMIT_ENABLED": "true", "TELEMETRY_RATE_LIMIT_RPM": "4"}
    first, second = make_app(**extra).test_client(), make_app(**extra).test_client()
    assert [first.get("/api/v1/runs").status_code, second.get("/api/v1/runs").status_code,
            first.get("/api/v1/runs").status_code, second.get("/api/v1/runs").status_code] == [200] * 4
    assert first.get("/api/v1/runs").status_code == 429
    assert second.get("/api/v1/runs").status_code == 429


def test_rate_limit_counts_per_client_address(make_app):
    client = make_app(TELEMETRY_RATE_LIMIT_ENABLED="true", TELEMETRY_RATE_LIMIT_RPM="1").test_client()
    assert client.get("/api/v1/runs", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 200
    assert client.get("/api/v1/runs", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 429
    assert client.get("/api/v1/runs", environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200


def test_bucket_refills_over_time(tmp_path):
    limiter = RateLimiter(tmp_path / "rl.sqlite", rpm=60)
    now = time.time()
    for _ in range(60):
        assert limiter.hit("k", now)[0]
    allowed, remaining, retry_after = limiter.hit("k", now)
    assert (allowed, remaining, retry_after) == (False, 0, 1)
    assert limiter.hit("k", now + 1.01)[0]
