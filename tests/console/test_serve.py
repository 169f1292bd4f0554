"""The real `python -m console serve`: gunicorn, the schema upgrade, the port and file."""

import sqlite3

import requests

from tests.helpers import ConsoleProcess, free_port


def test_serve_upgrades_and_answers_health_on_the_given_port_and_file(tmp_path):
    db_file = tmp_path / "x.sqlite"
    port = free_port()
    console = ConsoleProcess({"TELEMETRY_DB_PATH": str(db_file), "TELEMETRY_API_PORT": str(port),
                              "TELEMETRY_BASE_DIR": str(tmp_path / "base")}, tmp_path / "log")
    console.start()
    try:
        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        assert health["status"] == "ok" and health["database"] == "sqlite"
        tables = {r[0] for r in sqlite3.connect(db_file).execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"agent_runs", "run_events", "alembic_version"} <= tables
        assert "gthread" in console.log() or "Booting worker" in console.log()
    finally:
        console.stop()
    assert console.proc.returncode == 0  # graceful shutdown on SIGTERM


def test_serve_with_auto_upgrade_off_leaves_the_schema_alone(tmp_path):
    db_file = tmp_path / "y.sqlite"
    console = ConsoleProcess({"TELEMETRY_DB_PATH": str(db_file), "TELEMETRY_API_PORT": str(free_port()),
                              "TELEMETRY_AUTO_UPGRADE": "false"}, tmp_path / "log")
    console.start()
    try:
        assert requests.get(console.url + "/health", timeout=5).json()["schema_revision"] is None
    finally:
        console.stop()


def test_serve_with_two_workers_on_each_backend(env, backend, tmp_path):
    console = ConsoleProcess({**env, "TELEMETRY_API_PORT": str(free_port()), "TELEMETRY_API_WORKERS": "2"},
                             tmp_path / "log")
    console.start()
    try:
        assert requests.get(console.url + "/health", timeout=5).json()["database"] == backend
    finally:
        console.stop()


def test_json_log_format_writes_one_json_object_per_access_log_line(tmp_path):
    import json

    console = ConsoleProcess({"TELEMETRY_DB_PATH": str(tmp_path / "j.sqlite"), "TELEMETRY_API_PORT": str(free_port()),
                              "TELEMETRY_LOG_FORMAT": "json"}, tmp_path / "log")
    console.start()
    try:
        requests.get(console.url + "/health", headers={"X-Request-ID": "trace-me"}, timeout=5)
        requests.get(console.url + "/nowhere?a=1", headers={"X-Request-ID": 'say "hi" \\ bye'}, timeout=5)
    finally:
        console.stop()
    lines = [entry for entry in map(json.loads, console.log().splitlines()) if entry["logger"] == "gunicorn.access"]
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["trace-me"]["status"] == 200 and by_id["trace-me"]["request"] == "GET /health HTTP/1.1"
    odd = by_id['say "hi" \\ bye']  # still one JSON object, whatever the request carried
    assert odd["status"] == 404 and odd["request"] == "GET /nowhere?a=1 HTTP/1.1"
    assert int(odd["bytes"]) > 0 and odd["ms"] >= 0 and odd["remote"] == "127.0.0.1"


def test_text_log_format_writes_the_combined_access_line(tmp_path):
    import re

    console = ConsoleProcess({"TELEMETRY_DB_PATH": str(tmp_path / "t.sqlite"), "TELEMETRY_API_PORT": str(free_port())},
                             tmp_path / "log")
    console.start()
    try:
        requests.get(console.url + "/health?x=1", headers={"User-Agent": "probe/1", "Referer": "http://ref/"},
                     auth=("ada", "pw"), timeout=5)
    finally:
        console.stop()
    combined = re.compile(
        r'^127\.0\.0\.1 - ada \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /health\?x=1 HTTP/1\.1" 200 \d+ '
        r'"http://ref/" "probe/1"$'
    )
    assert [line for line in console.log().splitlines() if combined.match(line)], console.log()[-2000:]


def test_concurrent_upgrades_of_one_database_never_race(env, backend, tmp_path):
    """Several workers or hosts start at once: the upgrade lock lets one migrate, the rest find it done."""
    import os
    import subprocess
    import sys

    import sqlalchemy as sa

    from console.core.settings import load_settings
    from console.store import migrate
    from tests.conftest import empty_postgres
    from tests.helpers import ROOT

    if backend == "sqlite":
        fresh = {**env, "TELEMETRY_DB_PATH": str(tmp_path / "fresh.sqlite")}
    else:  # the session's database, taken back to empty
        migrate.downgrade(load_settings(env), "base")
        fresh = env
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "console", "db", "upgrade"], cwd=ROOT,
                                  env={**os.environ, **fresh}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        outcomes = [(p.wait(120), p.stderr.read()) for p in procs]
        assert all(code == 0 for code, _ in outcomes), [err[-500:] for _, err in outcomes]
        settings = load_settings(fresh)
        assert migrate.current_revision(settings) == migrate.head_revision()
        engine = sa.create_engine(settings.database_url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
        engine.dispose()
    finally:
        if backend == "postgresql":
            migrate.upgrade(load_settings(env))
            empty_postgres(env["TELEMETRY_DATABASE_URL"])
