"""Every route under /api is described in /openapi.json, with the error schema."""

from __future__ import annotations

import re
from pathlib import Path

from console.api.spec import openapi_path


def test_every_api_route_is_in_the_openapi_document(app, client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api"):
            continue
        path = openapi_path(re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule.rule))
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if method.lower() not in document["paths"].get(path, {}):
                missing.append(f"{method} {path}")
    assert missing == []


def test_run_operations_list_their_statuses(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"200", "201", "401", "413", "415", "422", "429", "503"} <= set(paths["/api/v1/runs"]["post"]["responses"])
    assert {"200", "400", "422"} <= set(paths["/api/v1/runs"]["get"]["responses"])
    assert {"204", "404"} <= set(paths["/api/v1/runs/{event_id}"]["delete"]["responses"])
    assert {"200", "400", "404", "422"} <= set(paths["/api/v1/runs/{event_id}"]["patch"]["responses"])
    assert "404" in paths["/api/v1/metadata/{field}"]["get"]["responses"]
    params = {p["name"] for p in paths["/api/v1/runs"]["get"]["parameters"]}
    assert {"agent_name", "status", "job_type", "created_before", "created_after", "start_time_from",
            "start_time_to", "limit", "offset", "cursor", "q", "parent_run_id", "environment", "host"} <= params


def test_every_operation_is_in_the_api_guide(client):
    guide = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    lines = [line.replace("`", "") for line in guide.splitlines()]
    missing = []
    for path, item in client.get("/openapi.json").get_json()["paths"].items():
        for method in item:
            wanted = f"{method.upper()} {path}"
            if not any(wanted in line for line in lines):
                missing.append(wanted)
    assert missing == []


SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_operation_ids_are_unique_snake_case_names(client):
    ids = [op["operationId"] for _m, _p, op in operations(client.get("/openapi.json").get_json())]
    assert [name for name in ids if not SNAKE_CASE.match(name)] == []
    assert len(ids) == len(set(ids)), sorted(name for name in ids if ids.count(name) > 1)
    by_call = {f"{m.upper()} {p}": op["operationId"] for m, p, op in operations(client.get("/openapi.json").get_json())}
    assert by_call["GET /api/v1/runs"] == "list_runs"
    assert by_call["POST /api/v1/runs"] == "create_run"
    assert by_call["GET /api/v1/runs/{event_id}"] == "get_run"
    assert by_call["PATCH /api/v1/runs/{event_id}"] == "update_run"
    assert by_call["DELETE /api/v1/runs/{event_id}"] == "delete_run"
    assert by_call["POST /api/v1/runs/batch"] == "create_runs_batch"
    assert by_call["POST /api/v1/ingest"] == "ingest"


def test_list_answers_describe_their_link_header(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    for path in ("/api/v1/runs", "/api/v1/runs/{event_id}/events"):
        link = paths[path]["get"]["responses"]["200"]["headers"]["Link"]
        assert 'rel="next"' in link["description"] and link["schema"] == {"type": "string"}, path


def security_by_call(app) -> dict[str, list]:
    document = app.test_client().get("/openapi.json", headers={"Authorization": "Bearer t1"}).get_json()
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["bearerAuth"]["description"]}
    return {f"{m.upper()} {p}": op["security"] for m, p, op in operations(document)}


def test_security_follows_the_auth_settings(make_app):
    token = [{"bearerAuth": []}]
    off = security_by_call(make_app())
    assert set(map(str, off.values())) == {"[]"}

    reads_open = security_by_call(make_app(TELEMETRY_API_AUTH_ENABLED="true", TELEMETRY_API_AUTH_TOKEN="t1"))
    assert reads_open["GET /api/v1/runs"] == [] and reads_open["GET /api/v1/stats"] == []
    assert reads_open["POST /api/v1/runs"] == token and reads_open["DELETE /api/v1/runs/{event_id}"] == token
    assert reads_open["GET /api/v1/runs/{event_id}/commit-url"] == token  # a write-guarded read
    assert reads_open["GET /health"] == [] and reads_open["GET /metrics"] == []

    closed = security_by_call(make_app(TELEMETRY_API_AUTH_ENABLED="true", TELEMETRY_API_AUTH_TOKEN="t1",
                                       TELEMETRY_API_AUTH_READS="true"))
    assert closed["GET /api/v1/runs"] == token and closed["POST /api/v1/ingest"] == token
    assert closed["GET /health"] == [] and closed["GET /version"] == [] and closed["GET /metrics"] == []


def test_security_matches_what_the_console_enforces(make_app):
    """No operation is documented open that answers 401 without a token, nor the other way round."""
    app = make_app(TELEMETRY_API_AUTH_ENABLED="true", TELEMETRY_API_AUTH_TOKEN="t1", TELEMETRY_API_AUTH_READS="true")
    client = app.test_client()
    wrong = []
    for call, security in security_by_call(app).items():
        method, path = call.split(" ")
        url = path.replace("{event_id}", "no-such-run").replace("{field}", "agent_name")
        status = client.open(url, method=method).status_code
        if (status == 401) != bool(security):
            wrong.append(f"{call}: {status} with security {security}")
    assert wrong == []
