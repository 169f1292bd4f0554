"""Answers kept until the next commit: /metrics and the stats never show an answer
older than the last commit, by this worker, another worker or another tool."""

from __future__ import annotations

import multiprocessing
import threading
import uuid

import pytest
import sqlalchemy as sa

from console.core.timeutil import format_utc, utcnow
from console.store.answer_cache import AnswerCache
from console.store.change_stamp import ChangeStamp
from console.store.db import Database, DatabaseUnavailable
from tests.console.conftest import post_run, run_body


def figures(client) -> tuple[dict, str, dict]:
    """(/metrics JSON, /metrics Prometheus text, the default stats), each asked twice and equal both times."""
    answers = []
    for _ in range(2):
        json_answer = client.get("/metrics").json
        prometheus = client.get("/metrics", headers={"Accept": "text/plain"}).text
        stats = client.get("/api/v1/stats").json
        answers.append((json_answer, prometheus, stats))
    assert answers[0] == answers[1]
    return answers[1]


def test_every_write_shows_in_the_next_answer(client, make_app):
    now = format_utc(utcnow())
    body = post_run(client, agent_name="a", start_time=now)
    metrics, prometheus, stats = figures(client)
    assert metrics["total_runs"] == 1 and metrics["performance"]["running"] == 1
    assert 'telemetry_runs{agent="a",status="running"} 1' in prometheus
    assert stats["overall"]["counts"] == {"running": 1}

    # A change of status moves neither the newest id nor the number of runs.
    assert client.patch(f"/api/v1/runs/{body['event_id']}", json={"status": "success"}).status_code == 200
    metrics, prometheus, stats = figures(client)
    assert metrics["performance"]["running"] == 0 and metrics["performance"]["success_rate"] == 1.0
    assert 'telemetry_runs{agent="a",status="success"} 1' in prometheus
    assert 'status="running"' not in prometheus.split("# HELP telemetry_runs_running")[0]
    assert stats["overall"]["counts"] == {"success": 1}

    # Another worker's write (its own engine and pool).
    other = make_app().test_client()
    assert other.post("/api/v1/runs/batch", json=[run_body(agent_name="b", start_time=now)]).status_code in (200, 201)
    metrics, prometheus, stats = figures(client)
    assert metrics["agents"] == {"a": 1, "b": 1}
    assert 'telemetry_runs_started_total{agent="b"} 1' in prometheus
    assert set(stats["agents"]) == {"a", "b"}

    assert client.delete(f"/api/v1/runs/{body['event_id']}").status_code == 204
    metrics, prometheus, stats = figures(client)
    assert metrics["agents"] == {"b": 1} and set(stats["agents"]) == {"b"}
    assert 'telemetry_runs{agent="a"' not in prometheus
    assert 'telemetry_runs_started_total{agent="a"} 1' in prometheus  # counters never fall


def test_a_range_is_its_own_answer(client):
    post_run(client, agent_name="a", start_time="2026-01-12T10:30:00Z")
    old = client.get("/api/v1/stats?since=2026-01-01").json
    recent = client.get("/api/v1/stats").json
    assert old["overall"]["total"] == 1 and old["since"].startswith("2026-01-01")
    assert recent["since"] != old["since"]
    assert client.get("/api/v1/stats?since=2026-01-01&bucket=hour").json["bucket"] == "hour"


@pytest.fixture
def cache(db):
    return AnswerCache(ChangeStamp(db.engine), entries=2)


def commit_elsewhere(settings) -> None:
    """A commit through a connection of its own, as another process or tool makes one."""
    engine = sa.create_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO ingest_counts (outcome, records) VALUES (:o, 1)"), {"o": uuid.uuid4().hex})
    engine.dispose()


def counted(calls: list):
    def compute(session):
        calls.append(1)
        return session.execute(sa.text("SELECT count(*) FROM ingest_counts")).scalar_one()
    return compute


def test_an_answer_is_kept_until_any_commit(cache, db, settings):
    calls: list = []
    with db.read() as session:
        assert cache.answer(session, "k", counted(calls)) == 0
    with db.read() as session:
        assert cache.answer(session, "k", counted(calls)) == 0
    assert len(calls) == 1
    commit_elsewhere(settings)
    with db.read() as session:
        assert cache.answer(session, "k", counted(calls)) == 1
    assert len(calls) == 2


def test_a_commit_while_computing_is_not_kept(cache, db, settings):
    calls: list = []

    def racing(session):
        value = counted(calls)(session)
        if len(calls) == 1:
            session.rollback()  # the read is done (on SQLite its lock would hold the commit off)
            commit_elsewhere(settings)  # lands after the answer was read, before it is kept
        return value

    with db.read() as session:
        assert cache.answer(session, "k", racing) == 0
    with db.read() as session:
        assert cache.answer(session, "k", racing) == 1  # computed again: the first was already old
    assert len(calls) == 2


def test_what_is_not_kept(cache, db, make_app):
    calls: list = []
    with db.read() as session:
        for _ in range(2):
            cache.answer(session, "large", counted(calls), keep=lambda _answer: False)
    assert len(calls) == 2
    with db.read() as session:
        for key in ("a", "b", "c", "a"):  # two entries: "a" left when "c" came
            cache.answer(session, key, counted(calls))
    assert len(calls) == 6
    off = make_app(TELEMETRY_ANSWER_CACHE_ENTRIES="0").extensions["telemetry_db"].answers
    with db.read() as session:
        for _ in range(2):
            off.answer(session, "k", counted(calls))
    assert len(calls) == 8


def test_many_threads_see_each_commit(cache, db, settings):
    errors: list = []
    stop = threading.Event()

    def reader():
        seen = 0
        while not stop.is_set():
            try:
                with db.read() as session:
                    now = cache.answer(session, "k", counted([]))
                    stored = session.execute(sa.text("SELECT count(*) FROM ingest_counts")).scalar_one()
            except DatabaseUnavailable:  # SQLite: a commit held the file past the busy timeout
                continue
            except Exception as exc:  # noqa: BLE001 - the thread reports, the test fails
                errors.append(exc)
                return
            if now < seen or now > stored:
                errors.append((seen, now, stored))
            seen = now

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    other = Database(settings)  # another worker's engine, with its bounded retry on a busy file
    for _ in range(5):
        other.write(lambda session: session.execute(
            sa.text("INSERT INTO ingest_counts (outcome, records) VALUES (:o, 1)"), {"o": uuid.uuid4().hex}))
    other.dispose()
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    with db.read() as session:
        assert cache.answer(session, "k", counted([])) == 5


def _child_stamp(stamp: ChangeStamp, queue) -> None:
    queue.put(stamp(None))


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_forked_worker_never_matches_its_parents_stamp(db):
    stamp = ChangeStamp(db.engine)
    parent = stamp(None)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_stamp, args=(stamp, queue))
    child.start()
    forked = queue.get(timeout=60)
    child.join(timeout=60)
    assert parent is not None and forked is not None and forked != parent
    assert stamp(None) == parent  # the parent's own connection is untouched
