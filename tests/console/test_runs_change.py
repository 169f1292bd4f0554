"""PATCH, DELETE, associate-commit, commit-url and repo-url of one run."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select

from console.core.timeutil import utcnow
from console.store.models import audit_log, run_events
from tests.console.conftest import post_run, run_body


def test_patch_updates_given_fields_and_names_them(client):
    body = post_run(client)
    before = client.get(f"/api/v1/runs/{body['event_id']}").get_json()
    response = client.patch(f"/api/v1/runs/{body['event_id']}", json={
        "status": "completed", "end_time": "2026-01-12T11:00:00+01:00", "duration_ms": 1500,
        "items_discovered": 9, "input_summary": "in", "metrics_json": '{"k": 2}', "error_summary": None,
    })
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["event_id"] == body["event_id"] and answer["updated"] is True
    assert set(answer["fields_updated"]) == {"status", "end_time", "duration_ms", "items_discovered",
                                             "input_summary", "metrics_json"}
    record = client.get(f"/api/v1/runs/{body['event_id']}").get_json()
    assert record["status"] == "success"
    assert record["end_time"] == "2026-01-12T10:00:00.000000+00:00"
    assert (record["duration_ms"], record["items_discovered"], record["input_summary"]) == (1500, 9, "in")
    assert record["metrics_json"] == {"k": 2}
    assert record["updated_at"] >= before["updated_at"]
    assert record["error_summary"] is None


def test_patch_with_no_field_is_400(client):
    body = post_run(client)
    for empty in ({}, {"status": None, "error_summary": None}, {"unknown": 1}):
        response = client.patch(f"/api/v1/runs/{body['event_id']}", json=empty)
        assert response.status_code == 400, empty
        assert isinstance(response.get_json()["detail"], str)


def test_patch_validates_and_404s(client):
    body = post_run(client)
    for bad in ({"status": "bogus"}, {"items_failed": -2}, {"end_time": "2026-01-12"}, {"git_commit_source": "x"}):
        assert client.patch(f"/api/v1/runs/{body['event_id']}", json=bad).status_code == 422, bad
    assert client.patch("/api/v1/runs/missing", json={"status": "success"}).status_code == 404
    assert client.get(f"/api/v1/runs/{body['event_id']}").get_json()["status"] == "running"


def test_delete_removes_run_and_events_and_is_audited(client, db):
    body = post_run(client)
    other = post_run(client)
    db.write(lambda s: s.execute(insert(run_events).values(
        event_id=body["event_id"], run_id=body["run_id"], event_type="step", timestamp=utcnow(), payload_json={})))
    response = client.delete(f"/api/v1/runs/{body['event_id']}")
    assert response.status_code == 204 and response.data == b""
    assert client.get(f"/api/v1/runs/{body['event_id']}").status_code == 404
    assert client.get(f"/api/v1/runs/{other['event_id']}").status_code == 200
    with db.read() as session:
        assert session.execute(select(run_events)).all() == []
        entries = session.execute(select(audit_log)).mappings().all()
    assert len(entries) == 1
    assert (entries[0]["action"], entries[0]["event_id"], entries[0]["actor"]) == ("delete_run", body["event_id"], "anonymous")
    assert client.delete(f"/api/v1/runs/{body['event_id']}").status_code == 404


def test_associate_commit_sets_git_columns(client):
    body = post_run(client, git_repo="https://gitlab.com/acme/tool")
    response = client.post(f"/api/v1/runs/{body['event_id']}/associate-commit", json={
        "commit_hash": "deadbeefcafe", "commit_source": "ci", "commit_author": "CI <ci@x>",
        "commit_timestamp": "2026-01-12T10:30:00+02:00"})
    assert response.status_code == 200
    assert response.get_json() == {"status": "success", "event_id": body["event_id"], "run_id": body["run_id"],
                                   "commit_hash": "deadbeefcafe"}
    record = client.get(f"/api/v1/runs/{body['event_id']}").get_json()
    assert (record["git_commit_hash"], record["git_commit_source"], record["git_commit_author"],
            record["git_commit_timestamp"]) == ("deadbeefcafe", "ci", "CI <ci@x>", "2026-01-12T10:30:00+02:00")
    assert record["commit_url"] == "https://gitlab.com/acme/tool/-/commit/deadbeefcafe"


@pytest.mark.parametrize("bad", [
    {"commit_hash": "abc", "commit_source": "ci"},
    {"commit_hash": "a" * 41, "commit_source": "ci"},
    {"commit_hash": "abcdef12", "commit_source": "human"},
    {"commit_source": "ci"},
    {"commit_hash": "abcdef12", "commit_source": "ci", "commit_timestamp": "noon"},
])
def test_associate_commit_validates(client, bad):
    body = post_run(client)
    assert client.post(f"/api/v1/runs/{body['event_id']}/associate-commit", json=bad).status_code == 422


def test_associate_commit_unknown_run_is_404(client):
    response = client.post("/api/v1/runs/nope/associate-commit", json={"commit_hash": "abcdef1", "commit_source": "llm"})
    assert response.status_code == 404


@pytest.mark.parametrize(("repo", "commit", "repo_url"), [
    ("https://github.com/o/r.git", "https://github.com/o/r/commit/abc1234", "https://github.com/o/r"),
    ("git@github.com:o/r.git", "https://github.com/o/r/commit/abc1234", "https://github.com/o/r"),
    ("https://gitlab.com/g/sub/r", "https://gitlab.com/g/sub/r/-/commit/abc1234", "https://gitlab.com/g/sub/r"),
    ("git@bitbucket.org:o/r.git", "https://bitbucket.org/o/r/commits/abc1234", "https://bitbucket.org/o/r"),
    ("https://example.org/o/r", None, None),
    (None, None, None),
])
def test_commit_and_repo_urls(client, repo, commit, repo_url):
    body = post_run(client, git_repo=repo, git_commit_hash="abc1234")
    assert client.get(f"/api/v1/runs/{body['event_id']}/commit-url").get_json() == {"commit_url": commit}
    assert client.get(f"/api/v1/runs/{body['event_id']}/repo-url").get_json() == {"repo_url": repo_url}


def test_self_hosted_host_mapped_by_setting(make_app):
    client = make_app(TELEMETRY_GIT_HOSTS="git.acme.internal=gitlab").test_client()
    body = post_run(client, git_repo="git@git.acme.internal:team/tool.git", git_commit_hash="abc1234")
    assert client.get(f"/api/v1/runs/{body['event_id']}/commit-url").get_json() == {
        "commit_url": "https://git.acme.internal/team/tool/-/commit/abc1234"}


def test_urls_of_unknown_run_are_404(client):
    assert client.get("/api/v1/runs/nope/commit-url").status_code == 404
    assert client.get("/api/v1/runs/nope/repo-url").status_code == 404


def test_rollups_stay_true_through_every_run_write(client, db):
    from console.store import reconcile
    from tests.console.rollup_check import assert_rollups_match

    one = post_run(client, status="success", duration_ms=1200, items_succeeded=3)
    batch = [run_body(status="failed", duration_ms=50) for _ in range(3)]
    assert client.post("/api/v1/runs/batch", json=batch + [batch[0]]).status_code == 201
    assert client.patch(f"/api/v1/runs/{one['event_id']}", json={"status": "partial", "duration_ms": 99999}).status_code == 200
    assert client.patch(f"/api/v1/runs/{batch[0]['event_id']}", json={"error_summary": "x"}).status_code == 200
    assert client.delete(f"/api/v1/runs/{batch[1]['event_id']}").status_code == 204
    assert_rollups_match(db)
    with db.read() as session:
        assert not reconcile.has_dirty(session)  # our own writes are accounted for, not left to reconcile
