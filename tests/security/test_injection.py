"""Injection: SQL metacharacters are stored and filtered verbatim; HTML/JS renders escaped on every page."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from console.store.search import MIN_QUERY_CHARS

PAYLOADS = [
    "'; DROP TABLE agent_runs; --",
    '" OR 1=1 --',
    "' OR ''='",
    "%",
    "_",
    "a%b_c",
    "back\\slash",
    "[x]*?",
    "$1 :name ?",
    "{{7*7}} ${7*7} {% raw %}",
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "</textarea><svg onload=alert(1)>",
    "é😀\u202e\u200b",
]
TEXT_FIELDS = ["product", "product_family", "platform", "subdomain", "website", "website_section", "item_name",
               "input_summary", "output_summary", "source_ref", "target_ref", "error_summary", "error_details",
               "git_repo", "git_branch", "git_commit_hash", "git_run_tag", "host", "environment", "trigger_type",
               "insight_id", "parent_run_id", "git_commit_author"]
FILTERS = ["agent_name", "job_type", "environment", "host", "parent_run_id"]
DANGEROUS = re.compile(r"<script>alert|<img src=x onerror|<svg onload|href=\"javascript:|href='javascript:", re.I)


@pytest.fixture
def stored(client) -> dict[str, dict]:
    """One run per payload, every text field set to it; a control run; events carrying it too."""
    out = {}
    start = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    for i, payload in enumerate(PAYLOADS):
        body = {"event_id": str(uuid.uuid4()), "run_id": f"run-{i}-{payload}", "agent_name": payload,
                "job_type": payload, "start_time": start, "status": "running" if i % 2 else "failure",
                "metrics_json": {payload: payload}, "context_json": [payload],
                **{f: payload for f in TEXT_FIELDS}}
        resp = client.post("/api/v1/runs", json=body)
        assert resp.status_code == 201, (payload, resp.get_json())
        resp = client.post(f"/api/v1/runs/{body['event_id']}/events",
                           json=[{"event_type": payload, "timestamp": start, "payload": {payload: [payload]}}])
        assert resp.status_code == 201, resp.get_json()
        out[payload] = body
    control = {"event_id": str(uuid.uuid4()), "run_id": "plain-run", "agent_name": "plain", "job_type": "plain",
               "start_time": start, "error_summary": "plain text"}
    assert client.post("/api/v1/runs", json=control).status_code == 201
    out["plain"] = control
    return out


def test_sql_metacharacters_are_stored_verbatim_in_every_field(client, stored):
    for payload in PAYLOADS:
        body = stored[payload]
        got = client.get(f"/api/v1/runs/{body['event_id']}").get_json()
        for field in ["run_id", "agent_name", "job_type", *TEXT_FIELDS]:
            assert got[field] == body[field], (payload, field, got[field])
        assert got["metrics_json"] == {payload: payload} and got["context_json"] == [payload]
        events = client.get(f"/api/v1/runs/{body['event_id']}/events").get_json()
        assert [(e["event_type"], e["payload"]) for e in events] == [(payload, {payload: [payload]})]
    assert len(client.get("/api/v1/runs?limit=1000").get_json()) == len(PAYLOADS) + 1  # every table still there


def test_sql_metacharacters_filter_exactly_and_never_as_wildcards(client, stored):
    everything = client.get("/api/v1/runs?limit=1000").get_json()
    for payload in PAYLOADS:
        for name in FILTERS:
            resp = client.get(f"/api/v1/runs?{name}={quote(payload, safe='')}&limit=1000")
            assert resp.status_code == 200, (name, payload, resp.get_json())
            assert [r["event_id"] for r in resp.get_json()] == [stored[payload]["event_id"]], (name, payload)
        # q: a literal substring of run_id, event_id or error_summary ("%" and "_" are not wildcards).
        resp = client.get(f"/api/v1/runs?q={quote(payload, safe='')}&limit=1000")
        if len(payload) < MIN_QUERY_CHARS:  # too short for the trigram index: refused, not scanned
            assert resp.status_code == 422, (payload, resp.get_json())
            continue
        assert resp.status_code == 200, (payload, resp.get_json())
        expected = {r["event_id"] for r in everything
                    if payload.lower() in (r["run_id"] + r["event_id"] + (r["error_summary"] or "")).lower()}
        got = {r["event_id"] for r in resp.get_json()}
        if got != expected:  # the search may be case-sensitive; it must never match more than the literal text
            exact = {r["event_id"] for r in everything
                     if payload in (r["run_id"] + r["event_id"] + (r["error_summary"] or ""))}
            assert exact <= got <= expected, (payload, len(got), len(expected))
        assert stored["plain"]["event_id"] not in got or payload in "plain-run plain text"
    for field in ("agent_name", "job_type", "environment", "host"):
        values = client.get(f"/api/v1/metadata/{field}").get_json()["values"]
        assert set(PAYLOADS) <= set(values), field
    stats = client.get("/api/v1/stats").get_json()
    assert set(PAYLOADS) <= set(stats["agents"])


def pages(stored) -> list[str]:
    out = ["/", "/stale?older_than_minutes=0", "/agents", "/jobs", "/runs/counts", "/login"]
    for payload in PAYLOADS:
        q = quote(payload, safe="")
        event_id = stored[payload]["event_id"]
        out += [f"/?agent={q}", f"/?q={q}", f"/?job_type={q}&status=failure", f"/runs/{event_id}",
                f"/runs/{event_id}/delete", f"/runs/counts?q={q}", f"/runs/new?agent={q}&after={q}",
                f"/runs/{q}", f"/?status={q}", f"/?cursor={q}"]
    return out


def test_html_and_javascript_in_every_field_render_escaped_on_every_page(client, stored):
    seen_escaped = False
    for path in pages(stored):
        for headers in ({}, {"HX-Request": "true"}):
            resp = client.get(path, headers=headers)
            assert resp.status_code < 500, (path, resp.status_code)
            html = resp.get_data(as_text=True)
            match = DANGEROUS.search(html)
            assert match is None, (path, headers, html[max(0, match.start() - 200): match.end() + 100])
            seen_escaped |= "&lt;script&gt;alert(" in html
    assert seen_escaped, "the payloads were never rendered at all: this test would prove nothing"
    detail = client.get(f"/runs/{stored[PAYLOADS[10]]['event_id']}").get_data(as_text=True)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in detail  # shown, escaped, in the detail page
