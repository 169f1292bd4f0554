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
