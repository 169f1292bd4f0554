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
