"""Rollups equal a recomputation from agent_runs: after our writes, and after other tools' writes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from console.domain import stats
from console.store import reconcile, rollups
from tests.console.rollup_check import assert_rollups_match
from tests.console.test_ingest import line
from tests.helpers import ROOT


@pytest.mark.parametrize("duration", [0, 1, 2, 999, 1000, 1001, 59_999, 3_600_000, 2**40])
def test_a_bucket_holds_its_duration_within_the_error_bound(duration):
    value = rollups.bucket_value(rollups.duration_bucket(duration))
    if duration == 0:
        assert value == 0
    else:
        assert abs(value - duration) / duration <= rollups.GAMMA**0.5 - 1 + 1e-9


def mixed_writes(client) -> None:
    lines = []
    for i in range(30):
        start = f"2026-01-12T{10 + i % 3:02d}:{i:02d}:00Z"
        lines.append(
            line(
                "run_started",
                start,
                {"items_discovered": i},
                event_id=f"r{i}",
                start_time=start,
                agent_name=f"agent-{i % 4}",
            )
        )
        if i % 2:
            lines.append(
                line(
                    "run_ended",
                    start,
                    {"status": "success" if i % 3 else "timeout", "duration_ms": i * 97, "items_succeeded": i},
                    event_id=f"r{i}",
                    start_time=start,
                    agent_name=f"agent-{i % 4}",
                )
            )
    assert client.post("/api/v1/ingest", json=lines).status_code == 200
    client.post("/api/v1/runs/mark-failed", json={"event_ids": ["r0", "r2", "r3"]})
    client.post(
        "/api/v1/ingest",
        json=[
            line(
                "run_ended",
                "2030-01-01T00:00:00Z",
                {"status": "partial"},
                event_id="r2",
                start_time="2026-01-12T10:02:00Z",
                agent_name="agent-2",
            )
        ],
    )
    # The compatible endpoints (another module) write through rollups.record_changes too.
    client.post(
        "/api/v1/runs",
        json={
            "event_id": "p1",
            "run_id": "p1",
            "agent_name": "agent-9",
            "job_type": "x",
            "start_time": "2026-01-12T12:00:00Z",
            "status": "success",
            "duration_ms": 7,
        },
    )
    client.patch("/api/v1/runs/p1", json={"status": "failure", "duration_ms": 70000})
    client.post(
        "/api/v1/runs/batch",
        json=[
            {
                "event_id": f"b{i}",
                "run_id": "b",
                "agent_name": "agent-1",
                "job_type": "x",
                "start_time": "2026-01-12T11:00:00Z",
                "status": "success",
                "duration_ms": i,
            }
            for i in range(5)
        ],
    )
    client.delete("/api/v1/runs/b1")


def test_rollups_follow_every_write_path(client, db):
    mixed_writes(client)
    assert_rollups_match(db)
    with db.read() as session:
        assert not reconcile.has_dirty(session)


@pytest.mark.parametrize("backend", ["sqlite"])  # other tools write the SQLite file directly
def test_direct_sqlite_writes_are_detected_and_reconciled(client, db, settings, backend):
    mixed_writes(client)
    conn = sqlite3.connect(settings.db_path)
    conn.execute(
        "INSERT INTO agent_runs (event_id, run_id, agent_name, job_type, start_time, status, duration_ms) "
        "VALUES ('ext-1', 'x', 'outsider', 'j', '2026-01-12T15:30:00.000000+00:00', 'success', 1234)"
    )
    conn.execute("DELETE FROM agent_runs WHERE event_id = 'r5'")
    conn.execute("UPDATE agent_runs SET status = 'cancelled' WHERE event_id = 'r7'")
    conn.execute("UPDATE agent_runs SET host = 'not rolled up' WHERE event_id = 'r9'")
    conn.commit()
    conn.close()
    with db.read() as session:
        dirty = reconcile.dirty_hours(session)
    assert [h.hour for h in dirty] == [10, 11, 15] or len(dirty) >= 2
    # Reading stats reconciles first.
    body = client.get("/api/v1/stats?since=2026-01-01").json
    assert body["agents"]["outsider"]["counts"] == {"success": 1}
    assert_rollups_match(db)
    with db.read() as session:
        assert not reconcile.has_dirty(session)


def test_rebuild_command_restores_wrecked_rollups(client, db, env):
    mixed_writes(client)
    db.write(lambda s: s.execute(rollups.text("UPDATE run_rollups SET runs = runs + 5")))
    env_vars = {**env}
    result = subprocess.run(
        [sys.executable, "-m", "console", "rollups", "check"],
        cwd=ROOT,
        env={**__import__("os").environ, **env_vars},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "console", "rollups", "rebuild"],
        cwd=ROOT,
        env={**__import__("os").environ, **env_vars},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "rebuilt" in result.stdout
    assert_rollups_match(db)


@pytest.mark.parametrize("backend", ["sqlite"])  # single POSTs wait above the watermark on SQLite
def test_the_check_command_counts_single_posts_not_counted_yet_first(client, db, env, backend, slow_idle_catch_up):
    import os

    from console.store import watermark

    body = {"event_id": "uncounted", "run_id": "u", "agent_name": "a", "job_type": "x",
            "start_time": "2026-01-12T10:00:00Z", "status": "success", "duration_ms": 5}
    assert client.post("/api/v1/runs", json=body).status_code == 201
    with db.read() as session:
        assert watermark.behind(session)
    result = subprocess.run([sys.executable, "-m", "console", "rollups", "check"], cwd=ROOT,
                            env={**os.environ, **env}, capture_output=True, text=True)
    assert result.returncode == 0 and "match" in result.stdout, result.stdout + result.stderr
    with db.read() as session:
        assert not watermark.behind(session)


def test_migration_downgrade_and_upgrade_keep_the_schema_usable(settings, client, db):
    from console.store import migrate

    client.post("/api/v1/ingest", json=[line("run_started", "2026-01-12T10:00:00Z")])
    client.post(
        "/api/v1/ingest",
        json=[
            line(
                "run_ended",
                "2026-01-12T11:00:00Z",
                {"status": "success", "duration_ms": 12345},
                event_id="e2",
                start_time="2026-01-12T11:00:00Z",
            )
        ],
    )
    migrate.downgrade(settings, "0003")
    migrate.upgrade(settings)
    # The upgrade rolled up the rows already stored.
    assert_rollups_match(db)
    body = client.get("/api/v1/stats?since=2026-01-01").json
    assert body["overall"]["counts"] == {"running": 1, "success": 1}


def test_an_adopted_legacy_file_is_rolled_up_by_the_upgrade(tmp_path):
    from console.core.settings import load_settings
    from console.store import migrate
    from console.store.db import Database
    from tests.console.legacy import build_legacy_file

    path = tmp_path / "legacy.sqlite"
    counts = build_legacy_file(path, runs=2000)
    settings = load_settings({"TELEMETRY_DB_PATH": str(path), "TELEMETRY_BASE_DIR": str(tmp_path / "base")})
    migrate.upgrade(settings)
    db = Database(settings)
    try:
        assert_rollups_match(db)
        with db.read() as session:
            assert not reconcile.has_dirty(session)
            totals = stats.totals_by_agent(session)
        assert sum(n for by_status in totals.values() for n in by_status.values()) == counts["agent_runs"]
    finally:
        db.dispose()


@pytest.mark.parametrize("backend", ["sqlite"])  # other tools write the SQLite file directly
def test_another_tool_writing_while_the_console_ingests_leaves_rollups_and_search_whole(client, db, settings, backend):
    import threading
    import time

    stop = threading.Event()
    written: list[str] = []

    def outsider():
        conn = sqlite3.connect(settings.db_path, timeout=30)
        i = 0
        while not stop.is_set():
            conn.execute(
                "INSERT INTO agent_runs (event_id, run_id, agent_name, job_type, start_time, status, duration_ms, "
                "error_summary) VALUES (?, ?, 'outsider', 'j', '2026-01-12T15:30:00.000000+00:00', 'failure', 10, "
                "'outsider broke')",
                (f"ext-{i}", f"outside-{i}"),
            )
            if i % 3 == 2:  # and now and then changes or removes one of its own
                conn.execute("UPDATE agent_runs SET status = 'success' WHERE event_id = ?", (f"ext-{i - 1}",))
                conn.execute("DELETE FROM agent_runs WHERE event_id = ?", (f"ext-{i - 2}",))
                written.remove(f"ext-{i - 2}")
            conn.commit()
            written.append(f"ext-{i}")
            i += 1
            time.sleep(0.005)  # a tool's pace, not a flood: the answers below stay within one page
        conn.close()

    thread = threading.Thread(target=outsider)
    thread.start()
    try:
        for batch in range(20):
            lines = [line("run_ended", "2026-01-12T11:00:00Z", {"status": "success", "error_summary": "inside broke"},
                          event_id=f"own-{batch}-{i}", run_id=f"inside-{batch}-{i}") for i in range(25)]
            assert client.post("/api/v1/ingest", json=lines).json["accepted"] == 25
    finally:
        stop.set()
        thread.join(30)
    assert len(written) > 0
    client.get("/api/v1/stats?since=2026-01-01")  # reconciles
    assert_rollups_match(db)
    with db.read() as session:
        session.connection().exec_driver_sql("INSERT INTO runs_search (runs_search, rank) VALUES ('integrity-check', 1)")
        assert not reconcile.has_dirty(session)
    found = {r["event_id"] for r in client.get("/api/v1/runs?q=outsider broke&limit=1000").json}
    assert found == set(written)
    assert len(client.get("/api/v1/runs?q=inside broke&limit=1000").json) == 500


# sqlite_stat1 of agent_runs at 10,000,000 runs (200 agents, 6 statuses, 20 job types,
# 50 hosts, 3 environments), as ANALYZE wrote it for the seeded benchmark file.
TEN_MILLION_STATS = {
    "idx_runs_environment_created": "10000000 3333334 1 1 1",
    "idx_runs_host_created": "10000000 200000 1 1 1",
    "idx_runs_job_type": "10000000 500000 1 1 1",
    "idx_runs_status": "10000000 1666667 1",
    "idx_runs_agent_created": "10000000 50000 1",
    "idx_runs_agent_status_created": "10000000 50000 9488 1",
    "idx_runs_created_desc": "10000000 1",
    "idx_runs_start": "10000000 1",
    "sqlite_autoindex_agent_runs_1": "10000000 1",
}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_catching_up_reads_only_the_runs_above_the_watermark_at_any_size(settings, backend):
    from console.store import counters
    from console.store.rollup_tables import ADD_ROWS_ABOVE

    conn = sqlite3.connect(settings.db_path)
    conn.execute("ANALYZE")
    conn.executemany("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('agent_runs', ?, ?)", TEN_MILLION_STATS.items())
    conn.commit()
    conn.close()
    conn = sqlite3.connect(settings.db_path)  # statistics are read when a connection opens
    try:
        for statement in (*ADD_ROWS_ABOVE, *counters.ADD_ROWS_ABOVE):
            steps = [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, (10_000_000,))]
            # Grouped by agent and status, SQLite read an index in that order from end to end
            # instead (2.6 s per catch-up at 10,000,000 runs).
            touching = [step for step in steps if " agent_runs " in f" {step} "]
            assert touching and all("USING INTEGER PRIMARY KEY (rowid>?)" in s for s in touching), (statement, steps)
    finally:
        conn.close()
