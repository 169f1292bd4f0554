"""Group commit: concurrent single inserts share transactions; each learns its own outcome."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text

from console.domain import group_commit
from console.domain.validation import RunCreate
from console.store import watermark
from console.store.models import agent_runs
from tests.console.conftest import post_run, run_body
from tests.console.rollup_check import assert_rollups_match


def test_concurrent_inserts_each_get_their_outcome(app, db):
    shared = run_body()
    bodies = [RunCreate.model_validate(run_body()) for _ in range(40)]
    bodies += [RunCreate.model_validate({**shared, "run_id": f"copy-{i}"}) for i in range(10)]
    outcomes: dict[int, bool] = {}
    start = threading.Barrier(len(bodies))

    def post(i: int) -> None:
        start.wait()
        outcomes[i] = group_commit.create_run(app, bodies[i])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [outcomes[i] for i in range(40)] == [True] * 40
    assert sorted(outcomes[i] for i in range(40, 50)) == [False] * 9 + [True]
    with db.read() as session:
        assert session.execute(select(func.count()).select_from(agent_runs)).scalar() == 41


def test_a_request_that_arrives_and_leaves_does_not_hold_up_the_writer(app):
    committer = group_commit.committer(app)
    committer.arrive()
    committer.leave()
    committer.arrive()  # still "arriving" for ever: the writer waits at most LINGER_SECONDS
    assert group_commit.create_run(app, RunCreate.model_validate(run_body())) is True
    committer.leave()


def test_database_errors_reach_every_waiting_request(app, monkeypatch):
    from console.store.db import DatabaseUnavailable

    def unavailable(work, **_kwargs):
        raise DatabaseUnavailable("the database is busy; retry shortly")

    monkeypatch.setattr(app.extensions["telemetry_db"], "write", unavailable)
    monkeypatch.setattr(app.extensions["telemetry_db"], "write_driver", unavailable)  # SQLite's path
    response = app.test_client().post("/api/v1/runs", json=run_body())
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.get_json()["detail"]


# SQLite: the group commit leaves counting and indexing to the insert watermark's catch-up.


def _behind(db) -> bool:
    with db.read() as session:
        return watermark.behind(session)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_read_of_the_rollups_counts_single_posts_first(client, db, backend, slow_idle_catch_up):
    for i in range(3):
        post_run(client, agent_name="solo", status="success", duration_ms=100 * (i + 1))
    assert _behind(db)  # inserted without their rollups and search entries
    body = client.get("/api/v1/stats?since=2026-01-01").json
    assert body["agents"]["solo"]["counts"] == {"success": 3}
    assert not _behind(db)
    assert_rollups_match(db)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_writer_catches_up_when_idle_and_every_few_hundred_runs(client, db, backend, monkeypatch):
    post_run(client, run_id="idle-one", error_summary="needle in the idle run")
    deadline = time.monotonic() + 30
    while _behind(db) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _behind(db)  # no read, no other write: the idle writer caught up
    assert [r["run_id"] for r in client.get("/api/v1/runs?q=needle in the idle").json] == ["idle-one"]

    monkeypatch.setattr(group_commit, "CATCH_UP_IDLE_SECONDS", 60.0)
    monkeypatch.setattr(group_commit, "CATCH_UP_RUNS", 2)
    posted = [post_run(client)["event_id"] for _ in range(3)]
    with db.read() as session:
        through = session.execute(text("SELECT through_id FROM run_watermark")).scalar_one()
        ids = [session.execute(select(agent_runs.c.id).where(agent_runs.c.event_id == e)).scalar_one() for e in posted]
    assert through == ids[1]  # caught up after the second; the third waits for the next
    assert_rollups_match(db)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_changes_to_runs_not_counted_yet_keep_the_rollups_true(client, db, backend, slow_idle_catch_up):
    from datetime import timedelta

    from console.core.timeutil import utcnow
    from console.jobs.retention import apply_retention

    stale = post_run(client, agent_name="a1", start_time="2026-01-12T10:00:00Z")
    patched = post_run(client, agent_name="a2", start_time="2026-01-12T11:00:00Z")
    deleted = post_run(client, agent_name="a3", status="success", duration_ms=5)
    kept = post_run(client, agent_name="a4", status="success", duration_ms=50)
    assert _behind(db)
    assert client.post("/api/v1/runs/mark-failed", json={"event_ids": [stale["event_id"]]}).status_code == 200
    assert _behind(db) is False  # the change caught up first, so that it found the run counted
    assert_rollups_match(db)

    extra = post_run(client, agent_name="a5", status="failure", duration_ms=9)
    assert client.patch(f"/api/v1/runs/{patched['event_id']}", json={"status": "success"}).status_code == 200
    assert client.delete(f"/api/v1/runs/{deleted['event_id']}").status_code == 204
    assert_rollups_match(db)

    post_run(client, agent_name="a6", status="success")
    assert _behind(db)
    report = apply_retention(db, 1, now=utcnow() + timedelta(days=2), pause=0)
    assert report["runs_deleted"] == 5  # every run, the one not counted yet included
    assert_rollups_match(db)  # all zero: nothing subtracted that was never added
    assert {kept["event_id"], extra["event_id"]}.isdisjoint(r["event_id"] for r in client.get("/api/v1/runs").json)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_rebuild_counts_and_indexes_runs_not_caught_up_yet(client, db, backend, slow_idle_catch_up):
    from console.store import reconcile

    post_run(client, run_id="before-rebuild", error_summary="needle before the rebuild")
    post_run(client, agent_name="rebuilt", status="failure", duration_ms=40)
    assert _behind(db)
    db.write(reconcile.rebuild)
    assert not _behind(db)
    assert [r["run_id"] for r in client.get("/api/v1/runs?q=needle before the").json] == ["before-rebuild"]
    assert client.get("/api/v1/stats?since=2026-01-01").json["agents"]["rebuilt"]["counts"] == {"failure": 1}
    assert_rollups_match(db)
