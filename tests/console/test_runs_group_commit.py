"""Group commit: concurrent single inserts share transactions; each learns its own outcome."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from console import group_commit
from console.models import agent_runs
from console.validation import RunCreate
from tests.console.conftest import run_body


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
    from console.db import DatabaseUnavailable

    def unavailable(work, **_kwargs):
        raise DatabaseUnavailable("the database is busy; retry shortly")

    monkeypatch.setattr(app.extensions["telemetry_db"], "write", unavailable)
    response = app.test_client().post("/api/v1/runs", json=run_body())
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.get_json()["detail"]
