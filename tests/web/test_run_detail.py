"""Run detail: fields, error, timeline, related runs; commit linking, status actions, delete."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from console.domain import events
from tests.web.conftest import HTMX


def text(response) -> str:
    return response.get_data(as_text=True)


def test_it_shows_every_field_the_error_the_timeline_and_the_json(client, db, make_run):
    event_id = make_run(
        status="failure", error_summary="ValueError: bad", error_details="Traceback (most recent call last):\n  line 1",
        metrics_json={"pages": 12}, context_json={"branch": "main"}, host="box-1", environment="prod",
        git_repo="git@github.com:acme/agent.git", git_commit_hash="0123456789abcdef",
    )
    db.write(lambda s: events.add_events(s, event_id, [
        {"event_type": "fetched", "timestamp": datetime.now(UTC) - timedelta(minutes=24),
         "payload": {"url": "https://x"}, "id": "ev-1"},
    ]))
    body = text(client.get(f"/runs/{event_id}"))
    assert "ValueError: bad" in body
    assert '<pre class="traceback" tabindex="0">Traceback (most recent call last):\n  line 1</pre>' in body
    assert "&#34;pages&#34;: 12" in body or "&quot;pages&quot;: 12" in body
    assert "box-1" in body and "prod" in body
    assert 'href="https://github.com/acme/agent/commit/0123456789abcdef"' in body
    assert 'href="https://github.com/acme/agent"' in body
    assert "fetched" in body and ("+6 m 0 s" in body or "+5 m 59 s" in body)
    assert "https://x" in body


def test_an_unknown_run_is_a_404_page(client):
    response = client.get("/runs/no-such-run")
    assert response.status_code == 404
    assert "<!doctype html>" in text(response) and "not found" in text(response)


def test_parent_and_child_runs_link_each_other(client, make_run):
    parent = make_run(run_id="parent-run")
    child = make_run(run_id="child-run", parent_run_id="parent-run")
    body = text(client.get(f"/runs/{parent}"))
    assert f'href="/runs/{child}"' in body
    body = text(client.get(f"/runs/{child}"))
    assert f'href="/runs/{parent}"' in body


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("parent_run_id", ["p1", "ab", "Abc", "0f3c2b1e-5d1a-4b7e-9c1d-2e3f4a5b6c7d", "nightly 50% 'done'"])
def test_a_parent_is_the_run_with_exactly_its_run_id_however_short(client, make_run, backend, parent_run_id):
    parent = make_run(run_id=parent_run_id)
    # Neighbours the search index also names (another case, a longer run_id holding it) are not the parent.
    others = [make_run(run_id=parent_run_id.swapcase()), make_run(run_id=f"x{parent_run_id}-retry")]
    child = make_run(run_id="child-run", parent_run_id=parent_run_id)
    body = text(client.get(f"/runs/{child}"))
    assert f'href="/runs/{parent}"' in body
    assert not any(f'href="/runs/{other}"' in body for other in others)


def test_a_parent_another_tool_wrote_into_the_file_is_found_before_it_is_indexed(client, make_run, settings):
    import sqlite3

    child = make_run(run_id="child-run", parent_run_id="outside-parent-7")
    with sqlite3.connect(settings.db_path) as conn:  # above the insert watermark: not in the search index yet
        conn.execute("INSERT INTO agent_runs (event_id, run_id, agent_name, job_type, start_time) "
                     "VALUES ('ext-1', 'outside-parent-7', 'tool', 'j', '2026-01-12T15:30:00.000000+00:00')")
    assert 'href="/runs/ext-1"' in text(client.get(f"/runs/{child}"))
    make_run(run_id="later")  # the console's next write indexes it
    assert 'href="/runs/ext-1"' in text(client.get(f"/runs/{child}"))


def test_linking_a_commit_shows_the_link(client, csrf, make_run):
    event_id = make_run(git_repo="https://gitlab.com/acme/agent")
    response = client.post(f"/runs/{event_id}/commit", data={
        "csrf_token": csrf, "commit_hash": "abcdef12345", "commit_source": "llm", "commit_author": "bot"})
    assert response.status_code == 303
    body = text(client.get(response.headers["Location"]))
    assert 'href="https://gitlab.com/acme/agent/-/commit/abcdef12345"' in body
    assert "Commit linked." in body
    run = client.get(f"/api/v1/runs/{event_id}").get_json()
    assert run["git_commit_hash"] == "abcdef12345" and run["git_commit_source"] == "llm"


def test_linking_a_commit_with_htmx_swaps_the_commit_block(client, csrf, make_run):
    event_id = make_run(git_repo="https://github.com/acme/agent")
    response = client.post(f"/runs/{event_id}/commit", headers=HTMX, data={
        "csrf_token": csrf, "commit_hash": "abcdef12345", "commit_source": "manual"})
    body = text(response)
    assert response.status_code == 200
    assert body.startswith('<div id="commit"') and "<html" not in body
    assert 'href="https://github.com/acme/agent/commit/abcdef12345"' in body


@pytest.mark.parametrize("htmx", [False, True])
def test_a_bad_commit_is_refused_with_the_error_beside_the_field(client, csrf, make_run, htmx):
    event_id = make_run()
    response = client.post(f"/runs/{event_id}/commit", headers=HTMX if htmx else {}, data={
        "csrf_token": csrf, "commit_hash": "abc", "commit_source": "robot"})
    body = text(response)
    assert response.status_code == (200 if htmx else 422)
    assert re.search(r'id="commit_hash-error">[^<]*at least 7', body)
    assert 'id="commit_source-error"' in body
    assert ('<html' in body) is not htmx
    assert client.get(f"/api/v1/runs/{event_id}").get_json()["git_commit_hash"] is None


def test_mark_failed_with_a_reason(client, csrf, make_run):
    event_id = make_run(status="running")
    response = client.post(f"/runs/{event_id}/status", data={
        "csrf_token": csrf, "status": "failure", "reason": "host rebooted"})
    assert response.status_code == 303
    run = client.get(f"/api/v1/runs/{event_id}").get_json()
    assert run["status"] == "failure" and "host rebooted" in run["error_summary"]
    assert "Marked failed." in text(client.get(f"/runs/{event_id}"))


def test_mark_cancelled_and_a_finished_run_is_left_alone(client, csrf, make_run):
    event_id = make_run(status="running")
    client.post(f"/runs/{event_id}/status", data={"csrf_token": csrf, "status": "cancelled", "reason": "dup"})
    run = client.get(f"/api/v1/runs/{event_id}").get_json()
    assert run["status"] == "cancelled" and "dup" in run["error_summary"]
    client.post(f"/runs/{event_id}/status", data={"csrf_token": csrf, "status": "failure"})
    assert client.get(f"/api/v1/runs/{event_id}").get_json()["status"] == "cancelled"
    assert "no longer running" in text(client.get(f"/runs/{event_id}"))


def test_delete_asks_first_then_removes_the_run(client, csrf, make_run):
    event_id = make_run()
    confirm = client.get(f"/runs/{event_id}/delete")
    assert confirm.status_code == 200 and 'name="confirm" value="yes"' in text(confirm)
    not_yet = client.post(f"/runs/{event_id}/delete", data={"csrf_token": csrf})
    assert not_yet.status_code == 200
    assert client.get(f"/api/v1/runs/{event_id}").status_code == 200
    done = client.post(f"/runs/{event_id}/delete", data={"csrf_token": csrf, "confirm": "yes"})
    assert done.status_code == 303
    assert client.get(f"/api/v1/runs/{event_id}").status_code == 404
    assert client.get(f"/runs/{event_id}").status_code == 404


def test_a_form_without_the_csrf_token_is_refused(client, csrf, make_run):
    event_id = make_run(status="running")
    for data in ({"status": "failure"}, {"status": "failure", "csrf_token": "forged"}):
        response = client.post(f"/runs/{event_id}/status", data=data)
        assert response.status_code == 400
        assert "CSRF" in text(response)
    assert client.get(f"/api/v1/runs/{event_id}").get_json()["status"] == "running"


def test_the_export_state_per_destination_shows_and_a_given_up_export_can_be_retried(client, db, csrf, make_run):
    from console.core.timeutil import utcnow
    from console.jobs.tables import export_destinations, export_state

    event_id = make_run()

    def seed(session):
        session.execute(export_destinations.insert().values(
            destination="hook-1", kind="webhook", label="webhook hooks.example", first_configured_at=utcnow()))
        session.execute(export_state.insert().values(
            event_id=event_id, destination="hook-1", state="gave_up", attempts=5, tries=5, last_status=502,
            last_error="<b>bad gateway</b>", last_tried_at=utcnow()))

    db.write(seed)
    body = text(client.get(f"/runs/{event_id}"))
    assert "webhook hooks.example" in body and "gave_up" in body and "HTTP 502" in body
    assert "&lt;b&gt;bad gateway&lt;/b&gt;" in body
    response = client.post(f"/runs/{event_id}/export/retry", data={"csrf_token": csrf, "destination": "hook-1"})
    assert response.status_code == 303
    body = text(client.get(f"/runs/{event_id}"))
    # No scheduler runs here: the message also says so (tests/jobs/test_no_scheduler.py).
    assert "Export queued again" in body and ">pending<" in body
