"""The `_total` counters of /metrics count each run once and never fall.

Every path that stores or ends a run is driven through the API (single POST,
replays, PATCH, batch, ingest and its replays, mark-failed, the stale sweep and the
reopening of its verdict), then deletes, retention and job-history pruning, on
SQLite and PostgreSQL. After each step the counters are read back from the
Prometheus exposition: exact figures, and never lower than before.
"""

from __future__ import annotations

import re
from datetime import timedelta

from console.core.timeutil import format_utc, utcnow
from console.jobs import history
from console.jobs.retention import apply_retention
from console.jobs.stale import sweep_stale_runs
from console.store import reconcile
from tests.console.conftest import run_body
from tests.console.test_ingest import line

SAMPLE = re.compile(r'^(\w+)\{(.*)\} (\S+)$')


def exposition(client) -> dict[tuple[str, tuple], float]:
    out = {}
    for text in client.get("/metrics", headers={"Accept": "text/plain"}).text.splitlines():
        match = SAMPLE.match(text)
        if match:
            labels = tuple(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2]))
            out[(match[1], labels)] = float(match[3])
    return out


class Counters:
    """Reads the counters and checks that none fell since the last read."""

    def __init__(self, client):
        self.client = client
        self.last: dict = {}

    def read(self) -> dict:
        now = {k: v for k, v in exposition(self.client).items() if k[0].endswith("_total")}
        fell = [f"{k}: {v} -> {now.get(k)}" for k, v in self.last.items() if now.get(k, -1) < v]
        assert fell == [], fell
        self.last = now
        return now

    def started(self, agent: str) -> float:
        return self.read().get(("telemetry_runs_started_total", (("agent", agent),)), 0)

    def finished(self, agent: str, status: str) -> float:
        return self.read().get(("telemetry_runs_finished_total", (("agent", agent), ("status", status))), 0)


def post(client, path: str, body, status: int = 201):
    response = client.post(path, json=body)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def patch(client, event_id: str, **fields):
    response = client.patch(f"/api/v1/runs/{event_id}", json=fields)
    assert response.status_code == 200, response.get_json()


def test_each_run_counts_once_on_every_path(client):
    c = Counters(client)
    running = post(client, "/api/v1/runs", run_body(agent_name="single"))
    assert running is not None
    body = run_body(agent_name="single", status="success", end_time="2026-01-12T10:31:00Z")
    post(client, "/api/v1/runs", body)
    post(client, "/api/v1/runs", body, status=200)  # an idempotent replay
    assert (c.started("single"), c.finished("single", "success")) == (2, 1)

    first = run_body(agent_name="patched")
    post(client, "/api/v1/runs", first)
    patch(client, first["event_id"], status="success")
    patch(client, first["event_id"], status="failure")  # final to final: no new finish
    assert (c.finished("patched", "success"), c.finished("patched", "failure")) == (1, 0)
    patch(client, first["event_id"], status="running")  # reopened ...
    patch(client, first["event_id"], status="timeout")  # ... its next final status is not a first one
    assert c.started("patched") == 1 and c.finished("patched", "timeout") == 0

    batch = [run_body(agent_name="batched"), run_body(agent_name="batched", status="partial")]
    post(client, "/api/v1/runs/batch", batch)
    post(client, "/api/v1/runs/batch", batch)  # replayed: nothing new
    assert (c.started("batched"), c.finished("batched", "partial")) == (2, 1)
    patch(client, batch[0]["event_id"], status="cancelled")
    assert c.finished("batched", "cancelled") == 1

    now = utcnow()
    lines = [
        line("run_started", format_utc(now), event_id="ing-1", agent_name="ingested", start_time=format_utc(now)),
        line("run_ended", format_utc(now), {"status": "success"}, event_id="ing-1", agent_name="ingested",
             start_time=format_utc(now)),
        line("run_started", format_utc(now), event_id="ing-2", agent_name="ingested", start_time=format_utc(now)),
    ]
    assert post(client, "/api/v1/ingest", lines, status=200)["accepted"] == 3
    assert post(client, "/api/v1/ingest", lines, status=200)["duplicates"] == 3
    end = line("run_ended", format_utc(now), {"status": "failure"}, event_id="ing-2", agent_name="ingested",
               start_time=format_utc(now))
    post(client, "/api/v1/ingest", [end], status=200)
    post(client, "/api/v1/ingest", [end], status=200)
    assert (c.started("ingested"), c.finished("ingested", "success"), c.finished("ingested", "failure")) == (2, 1, 1)

    doomed = run_body(agent_name="stale")
    post(client, "/api/v1/runs", doomed)
    post(client, "/api/v1/runs/mark-failed", {"event_ids": [doomed["event_id"]]}, status=200)
    post(client, "/api/v1/runs/mark-failed", {"event_ids": [doomed["event_id"]]}, status=200)
    assert c.finished("stale", "failure") == 1


def test_a_stale_verdict_reopened_by_a_heartbeat_is_not_counted_again(client, app):
    c = Counters(client)
    hours_ago = format_utc(utcnow() - timedelta(hours=3))
    silent = run_body(agent_name="swept", start_time=hours_ago)
    post(client, "/api/v1/runs", silent)
    db = app.extensions["telemetry_db"]
    assert sweep_stale_runs(db, 60)["marked_failed"] == 1
    assert c.finished("swept", "failure") == 1
    post(client, f"/api/v1/runs/{silent['event_id']}/heartbeat", {"timestamp": format_utc(utcnow())}, status=200)
    assert client.get(f"/api/v1/runs/{silent['event_id']}").get_json()["status"] == "running"
    patch(client, silent["event_id"], status="success")
    assert (c.started("swept"), c.finished("swept", "failure"), c.finished("swept", "success")) == (1, 1, 0)


def test_deletes_retention_and_rebuilds_leave_the_counters_alone(client, app):
    c = Counters(client)
    db = app.extensions["telemetry_db"]
    old = format_utc(utcnow() - timedelta(days=40))
    kept = [run_body(agent_name="kept", status="success") for _ in range(3)]
    aged = [run_body(agent_name="kept", status="failure", created_at=old) for _ in range(2)]
    post(client, "/api/v1/runs/batch", kept + aged)
    before = c.read()
    assert c.started("kept") == 5

    assert client.delete(f"/api/v1/runs/{kept[0]['event_id']}").status_code == 204
    assert apply_retention(db, 30)["runs_deleted"] == 2
    db.write(reconcile.rebuild)
    after = c.read()
    assert after == before
    gauges = exposition(client)
    assert gauges[("telemetry_runs", (("agent", "kept"), ("status", "success")))] == 2
    assert ("telemetry_runs", (("agent", "kept"), ("status", "failure"))) not in gauges


def test_job_failures_survive_pruning_of_job_history(client, app):
    c = Counters(client)
    db = app.extensions["telemetry_db"]
    long_ago = utcnow() - timedelta(days=100)

    def failing_runs(session):
        for n in range(3):
            run = history.claim_firing(session, "backup", long_ago + timedelta(minutes=n), "schedule", now=long_ago)
            history.finish_firing(session, run, "failure", error="disk full", now=long_ago)

    db.write(failing_runs)
    key = ("telemetry_job_failures_total", (("job", "backup"),))
    assert c.read()[key] == 3
    assert db.write(lambda s: history.prune_history(s, 30)) == 3
    assert c.read()[key] == 3


def test_migration_0013_starts_the_counters_from_the_stored_runs(make_app, env):
    from console.core.settings import load_settings
    from console.store import migrate

    app = make_app()
    client = app.test_client()
    post(client, "/api/v1/runs/batch", [run_body(agent_name="a"), run_body(agent_name="a", status="success"),
                                         run_body(agent_name="b", status="failure")])
    app.extensions["telemetry_db"].dispose()
    settings = load_settings(env)
    migrate.downgrade(settings, "0012")
    if settings.db_path is not None:  # the newest run not counted yet: the watermark's catch-up counts it
        import sqlite3

        with sqlite3.connect(settings.db_path) as conn:
            conn.execute("UPDATE run_watermark SET through_id = through_id - 1")
    migrate.upgrade(settings)

    counted = exposition(make_app().test_client())
    assert counted[("telemetry_runs_started_total", (("agent", "a"),))] == 2
    assert counted[("telemetry_runs_started_total", (("agent", "b"),))] == 1
    assert counted[("telemetry_runs_finished_total", (("agent", "a"), ("status", "success")))] == 1
    assert counted[("telemetry_runs_finished_total", (("agent", "b"), ("status", "failure")))] == 1
    assert ("telemetry_runs_finished_total", (("agent", "a"), ("status", "running"))) not in counted


def test_agent_names_are_bound_never_spliced(client):
    c = Counters(client)
    odd = "50%s'); DROP TABLE run_counters; --\\"
    post(client, "/api/v1/runs/batch", [run_body(agent_name=odd, status="success")])
    assert (c.started(odd.replace("\\", "\\\\")), c.finished(odd.replace("\\", "\\\\"), "success")) == (1, 1)
