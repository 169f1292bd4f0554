"""GET /metrics: JSON by default; Prometheus text or OpenMetrics when asked."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from console.core.timeutil import format_utc, utcnow
from tests.console.conftest import run_body
from tests.console.test_ingest import line


def seed(client) -> None:
    now = utcnow()
    old = format_utc(now - timedelta(hours=3))
    lines = [
        line(
            "run_ended",
            format_utc(now),
            {"status": "success", "duration_ms": 100},
            event_id="1",
            agent_name='a"b',
            start_time=format_utc(now),
        ),
        line("run_started", old, event_id="2", agent_name="quiet", start_time=old),
        line("run_started", format_utc(now), event_id="3", agent_name="quiet", start_time=format_utc(now)),
    ]
    assert client.post("/api/v1/ingest", json=lines + [{"v": 7}]).json["accepted"] == 3


def test_json_by_default(client):
    seed(client)
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.json
    assert body["total_runs"] == 3
    assert body["agents"] == {'a"b': 1, "quiet": 2}
    assert body["recent_24h"] == 3
    assert body["performance"]["running"] == 2 and body["performance"]["success_rate"] == 1.0


def test_prometheus_text_from_the_database(client):
    seed(client)
    response = client.get("/metrics", headers={"Accept": "text/plain"})
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'telemetry_runs{agent="a\\"b",status="success"} 1' in text
    assert 'telemetry_runs{agent="quiet",status="running"} 2' in text
    assert 'telemetry_runs_started_total{agent="quiet"} 2' in text
    assert 'telemetry_runs_finished_total{agent="a\\"b",status="success"} 1' in text
    assert "# TYPE telemetry_runs gauge" in text and "# TYPE telemetry_runs_started_total counter" in text
    assert 'telemetry_runs_running{agent="quiet"} 2' in text
    assert 'telemetry_runs_stale{agent="quiet"} 1' in text
    assert 'telemetry_ingest_records_total{outcome="accepted"} 3' in text
    assert 'telemetry_ingest_records_total{outcome="rejected"} 1' in text
    assert "# TYPE telemetry_job_last_success_timestamp_seconds gauge" in text
    assert "# TYPE telemetry_job_failures_total counter" in text


def test_openmetrics_for_a_scraper(client):
    seed(client)
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    response = client.get("/metrics", headers={"Accept": accept})
    assert response.content_type.startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert "# TYPE telemetry_runs gauge" in response.text
    assert "# TYPE telemetry_runs_started counter" in response.text  # OpenMetrics: the family without _total


def test_browser_and_curl_get_json(client):
    for accept in ("*/*", "text/html,application/xhtml+xml,*/*;q=0.8", "application/json"):
        assert client.get("/metrics", headers={"Accept": accept}).mimetype == "application/json"


def test_job_metrics_read_job_runs(client, db):
    with db.read() as session:
        has_jobs = sa.inspect(session.connection()).has_table("job_runs")
    assert has_jobs, "job metrics read job_runs (migration 0003_jobs)"
    now = utcnow()
    rows = [
        ("backup", "success", now - timedelta(hours=1)),
        ("backup", "failure", now),
        ("retention", "failure", now - timedelta(minutes=5)),
    ]

    def insert(session):
        for job, outcome, at in rows:
            session.execute(
                sa.text(
                    "INSERT INTO job_runs (job, scheduled_for, trigger, runner, started_at, ended_at, outcome) "
                    "VALUES (:job, :at, 'schedule', 'test', :at, :at, :outcome)"
                ),
                {"job": job, "at": format_utc(at) if db.dialect == "sqlite" else at, "outcome": outcome},
            )

    db.write(insert)
    text = client.get("/metrics", headers={"Accept": "text/plain"}).text
    expected = (now - timedelta(hours=1)).timestamp()
    line_ = next(
        x for x in text.splitlines() if x.startswith('telemetry_job_last_success_timestamp_seconds{job="backup"}')
    )
    assert abs(float(line_.split()[-1]) - expected) < 1
    assert 'telemetry_job_failures_total{job="backup"} 1' in text
    assert 'telemetry_job_failures_total{job="retention"} 1' in text


def test_metrics_stay_open_when_auth_is_on(env):
    from console.app import create_app
    from console.core.settings import load_settings

    app = create_app(
        load_settings(
            {
                **env,
                "TELEMETRY_API_AUTH_ENABLED": "true",
                "TELEMETRY_API_AUTH_TOKEN": "t0ken",
                "TELEMETRY_API_AUTH_READS": "true",
                "TELEMETRY_RATE_LIMIT_ENABLED": "true",
                "TELEMETRY_RATE_LIMIT_RPM": "1",
            }
        ),
        {"TESTING": True},
    )
    try:
        client = app.test_client()
        for _ in range(3):
            assert client.get("/metrics").status_code == 200
        assert client.post("/api/v1/ingest", json=[]).status_code == 401
    finally:
        app.extensions["telemetry_db"].dispose()


def _count_in_window(db, now) -> int:
    with db.read() as session:
        return session.execute(sa.text("SELECT count(*) FROM agent_runs WHERE created_at >= :t"),
                               {"t": format_utc(now - timedelta(hours=24)) if db.dialect == "sqlite"
                                else now - timedelta(hours=24)}).scalar_one()


def test_recent_24h_follows_inserts_deletes_and_the_sliding_window(client, db):
    from console.api.prometheus import usage

    start = utcnow()

    def recent(now):
        with db.read() as session:
            return usage(session, now=now)["recent_24h"]

    def post(i, created):
        body = run_body(event_id=f"r{i}", created_at=format_utc(created))
        assert client.post("/api/v1/runs/batch", json=[body]).status_code == 201

    for i, hours_ago in enumerate([30, 23, 20, 10, 1]):
        post(i, start - timedelta(hours=hours_ago))
    steps = [start, start, start + timedelta(hours=2), start + timedelta(hours=5)]
    for step, now in enumerate(steps):
        assert recent(now) == _count_in_window(db, now), step
    post(5, start + timedelta(hours=5))
    post(6, start - timedelta(hours=40))  # created long ago: inserted, never in the window
    now = start + timedelta(hours=6)
    assert recent(now) == _count_in_window(db, now) == 3
    assert client.delete("/api/v1/runs/r4").status_code == 204
    assert recent(now) == _count_in_window(db, now) == 2
    post(7, now)
    assert client.delete("/api/v1/runs/r5").status_code == 204  # one in, one out: the total is unchanged
    assert recent(now) == _count_in_window(db, now) == 2
    # An earlier `now` (another worker's clock) is counted afresh.
    assert recent(start) == _count_in_window(db, start) == 4
