"""GET /api/v1/metadata and /api/v1/metadata/{field}, with the short cache."""

from __future__ import annotations

import sqlite3

import pytest

from console.api import metadata as metadata_module
from tests.console.conftest import post_run


def test_distinct_agent_names_and_job_types_with_counts(client):
    post_run(client, agent_name="beta", job_type="index")
    post_run(client, agent_name="alpha", job_type="crawl")
    post_run(client, agent_name="alpha", job_type="crawl")
    body = client.get("/api/v1/metadata").get_json()
    assert body["agent_names"] == ["alpha", "beta"]
    assert body["job_types"] == ["crawl", "index"]
    assert body["counts"] == {"agent_names": 2, "job_types": 2}
    assert body["cache_hit"] is False


def test_second_call_hits_the_cache_until_it_expires(client, monkeypatch):
    post_run(client)
    assert client.get("/api/v1/metadata").get_json()["cache_hit"] is False
    assert client.get("/api/v1/metadata").get_json()["cache_hit"] is True
    monkeypatch.setattr(metadata_module, "CACHE_SECONDS", 0.0)
    assert client.get("/api/v1/metadata").get_json()["cache_hit"] is False


def test_a_write_through_the_api_drops_the_cache_on_sqlite(client, backend):
    post_run(client, agent_name="alpha")
    client.get("/api/v1/metadata")
    post_run(client, agent_name="gamma")
    body = client.get("/api/v1/metadata").get_json()
    if backend == "sqlite":
        assert body["cache_hit"] is False
        assert body["agent_names"] == ["alpha", "gamma"]
    else:  # PostgreSQL: at most 5 s old
        assert body["cache_hit"] is True


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_direct_write_to_the_sqlite_file_drops_the_cache(client, settings):
    post_run(client, agent_name="alpha")
    assert client.get("/api/v1/metadata").get_json()["agent_names"] == ["alpha"]
    conn = sqlite3.connect(settings.db_path)
    conn.execute("UPDATE agent_runs SET agent_name = 'renamed'")
    conn.commit()
    conn.close()
    body = client.get("/api/v1/metadata").get_json()
    assert body["cache_hit"] is False and body["agent_names"] == ["renamed"]


@pytest.mark.parametrize(("field", "values"), [
    ("status", ["failure", "running"]),
    ("agent_name", ["a1", "a2"]),
    ("environment", ["prod"]),
    ("host", []),
    ("platform", ["linux"]),
    ("git_repo", ["https://github.com/o/r"]),
])
def test_field_values(client, field, values):
    post_run(client, agent_name="a1", status="failed", environment="prod", platform="linux",
             git_repo="https://github.com/o/r")
    post_run(client, agent_name="a2")
    body = client.get(f"/api/v1/metadata/{field}").get_json()
    assert body == {"field": field, "values": values, "count": len(values), "truncated": False}


def test_field_not_offered_is_404(client):
    for field in ("error_details", "nope", "id"):
        response = client.get(f"/api/v1/metadata/{field}")
        assert response.status_code == 404 and response.get_json()["detail"]
