"""Backup and restore: checked copies during ingest, keep N, restore that serves, serving lock."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from console.cli.main import main
from console.core.timeutil import format_utc, utcnow
from console.jobs import history
from console.jobs.backup import BackupError, list_backups, restore, take_backup
from console.jobs.scheduler import run_job
from console.store.db import Database
from console.store.models import agent_runs
from tests.helpers import ConsoleProcess, free_port
from tests.jobs.conftest import insert_runs, run_row


def pg_bin_dir() -> str:
    """pg_dump of the test server's major version: the system's, or pgserver's own."""
    if os.environ.get("TELEMETRY_TEST_DATABASE_URL"):
        return ""
    import pgserver

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin")


@pytest.fixture
def ingest_running(console_server):
    """A real console ingesting runs (POST /api/v1/runs) until the test ends; yields the count written."""
    stop = threading.Event()
    written = [0]
    failures: list[str] = []

    def loop():
        http = requests.Session()
        while not stop.is_set():
            body = {"event_id": str(uuid.uuid4()), "run_id": "live", "agent_name": "agent-a", "job_type": "crawl",
                    "start_time": format_utc(utcnow())}
            try:
                response = http.post(console_server.url + "/api/v1/runs", json=body, timeout=10)
                if response.status_code == 201:
                    written[0] += 1
                else:
                    failures.append(f"{response.status_code} {response.text[:200]}")
            except requests.RequestException as exc:
                failures.append(repr(exc))

    thread = threading.Thread(target=loop)
    thread.start()
    deadline = time.monotonic() + 10
    while written[0] < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    yield written
    stop.set()
    thread.join()
    assert not failures, failures[:5]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_backup_during_ingest_is_sound_and_restores_to_a_console_that_serves(
        settings, env, tmp_path, ingest_running):
    insert_runs(Database(settings), [run_row() for _ in range(2000)])
    report = take_backup(settings)
    during = ingest_running[0]
    path = Path(report["path"])
    assert path.parent == settings.backup_dir and path.name.startswith("telemetry-") and path.suffix == ".sqlite"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    copied = conn.execute("SELECT count(*) FROM agent_runs").fetchone()[0]
    conn.close()
    assert copied == report["runs"] and 2050 <= copied <= 2000 + during + 5
    assert not list(path.parent.glob(".*partial*"))

    target = tmp_path / "restored" / "telemetry.sqlite"
    result = restore(settings, path, to=target)
    assert result["runs"] == copied and result["replaced_file_kept_at"] is None
    console = ConsoleProcess({"TELEMETRY_DB_PATH": str(target), "TELEMETRY_BASE_DIR": str(tmp_path / "b2"),
                              "TELEMETRY_SECRET_KEY": "x", "TELEMETRY_API_PORT": str(free_port())},
                             tmp_path / "restored.log")
    console.start()
    try:
        assert requests.get(console.url + "/health", timeout=5).json()["status"] == "ok"
        runs = requests.get(console.url + "/api/v1/runs?limit=1000", timeout=5)
        assert runs.status_code == 200 and len(runs.json()) == 1000
    finally:
        console.stop()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_restore_refuses_while_a_console_serves_the_target_unless_forced(settings, env, tmp_path, console_server,
                                                                        capsys, monkeypatch):
    insert_runs(Database(settings), [run_row(run_id="before-backup")])
    backup = Path(take_backup(settings)["path"])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["restore", str(backup)]) == 3
    assert "serving" in capsys.readouterr().err
    # Only that target's lock counts: restoring elsewhere is fine meanwhile.
    assert main(["restore", str(backup), "--to", str(tmp_path / "elsewhere.sqlite")]) == 0
    capsys.readouterr()
    assert main(["restore", str(backup), "--force"]) == 0
    kept = list(settings.db_path.parent.glob("telemetry.sqlite.replaced-*"))
    assert len(kept) == 1 and sqlite3.connect(kept[0]).execute("SELECT count(*) FROM agent_runs").fetchone()[0] == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_corrupt_file_is_refused_and_the_target_left_alone(settings, tmp_path):
    bad = tmp_path / "telemetry-bad.sqlite"
    bad.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    before = settings.db_path.read_bytes()
    with pytest.raises(BackupError):
        restore(settings, bad)
    with pytest.raises(BackupError, match="no agent_runs"):
        empty = tmp_path / "empty.sqlite"
        sqlite3.connect(empty).execute("CREATE TABLE t (x)").connection.commit()
        restore(settings, empty)
    assert settings.db_path.read_bytes() == before


@pytest.mark.parametrize("backend", ["sqlite"])
def test_keeps_the_newest_n_and_compresses_when_asked(make_settings, tmp_path):
    settings = make_settings(TELEMETRY_BACKUP_KEEP=2, TELEMETRY_BACKUP_COMPRESS="true")
    insert_runs(Database(settings), [run_row(run_id="kept")])
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    paths = []
    for i in range(3):
        paths.append(Path(take_backup(settings, now=t0 + timedelta(days=i))["path"]))
        os.utime(paths[-1], (1_000_000 + i, 1_000_000 + i))
    assert [p.name for p in list_backups(settings.backup_dir)] == [
        "telemetry-20260302T000000Z.sqlite.gz", "telemetry-20260303T000000Z.sqlite.gz"]
    target = tmp_path / "from-gz.sqlite"
    assert restore(settings, paths[-1], to=target)["runs"] == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_failed_backup_is_a_failed_job_in_the_history(db, settings, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = run_job(db, settings, "backup", work=lambda: take_backup(settings, dest_dir=not_a_dir))
    assert result["outcome"] == "failure"
    with db.read() as session:
        (run,) = history.recent_runs(session, "backup")
        assert history.job_metrics(session)["backup"]["failures"] == 1
    assert run["outcome"] == "failure" and run["error"]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_postgresql_backup_with_pg_dump_and_restore(db, make_settings):
    settings = make_settings(TELEMETRY_PG_BIN_DIR=pg_bin_dir())
    rows = [run_row(run_id=f"pg-{i}") for i in range(30)]
    insert_runs(db, rows)
    report = take_backup(settings)
    path = Path(report["path"])
    assert path.name.endswith(".dump") and path.stat().st_size > 0
    db.write(lambda s: s.execute(agent_runs.delete()))
    restore(settings, path)
    with db.read() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(agent_runs)).scalar_one() == 30


@pytest.mark.parametrize("backend", ["postgresql"])
def test_postgresql_without_pg_dump_says_so(db, make_settings, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    settings = make_settings(TELEMETRY_PG_BIN_DIR="/nonexistent")
    with pytest.raises(BackupError, match="pg_dump is not on the PATH"):
        take_backup(settings)
