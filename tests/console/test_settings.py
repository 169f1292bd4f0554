"""Settings: defaults, the base-directory rule, and one-line errors for bad values."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from console.core.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_serve_sqlite_under_the_base_dir(tmp_path):
    settings = load_settings({"TELEMETRY_BASE_DIR": str(tmp_path)})
    assert settings.api_host == "127.0.0.1"
    assert settings.api_port == 8765
    assert settings.api_workers == 1 and settings.api_threads == 8 and settings.api_timeout == 60
    assert settings.db_journal_mode == "DELETE" and settings.db_synchronous == "FULL"
    assert settings.db_path == tmp_path / "db" / "telemetry.sqlite"
    assert settings.database_url == f"sqlite:///{tmp_path}/db/telemetry.sqlite"


def test_database_url_wins_over_the_path(tmp_path):
    settings = load_settings(
        {"TELEMETRY_DB_PATH": str(tmp_path / "x.sqlite"), "TELEMETRY_DATABASE_URL": "postgresql://u:pw@h/db"}
    )
    assert not settings.is_sqlite
    assert settings.database_url == "postgresql+psycopg://u:pw@h/db"
    assert settings.db_path is None


@pytest.mark.parametrize(
    "name,value,allowed",
    [
        ("TELEMETRY_API_PORT", "http", "whole number"),
        ("TELEMETRY_API_PORT", "70000", "at most 65535"),
        ("TELEMETRY_API_WORKERS", "0", "at least 1"),
        ("TELEMETRY_DB_JOURNAL_MODE", "MEMORY", "DELETE, WAL"),
        ("TELEMETRY_DB_SYNCHRONOUS", "OFF", "FULL, NORMAL"),
        ("TELEMETRY_API_AUTH_ENABLED", "maybe", "true or false"),
        ("TELEMETRY_LOG_FORMAT", "xml", "text, json"),
        ("TELEMETRY_DATABASE_URL", "mysql://x", "postgresql"),
        ("TELEMETRY_ANSWER_CACHE_ENTRIES", "-1", "at least 0"),
        ("TELEMETRY_ANSWER_CACHE_ENTRIES", "100000", "at most 10000"),
    ],
)
def test_bad_value_names_variable_value_and_what_is_allowed(name, value, allowed):
    with pytest.raises(SettingsError) as info:
        load_settings({name: value})
    message = str(info.value)
    assert name in message and allowed in message and "\n" not in message


def test_auth_without_a_token_is_refused():
    with pytest.raises(SettingsError, match="TELEMETRY_API_AUTH_TOKEN"):
        load_settings({"TELEMETRY_API_AUTH_ENABLED": "true"})


def test_secret_key_is_generated_once_with_mode_0600_beside_the_database(tmp_path):
    settings = load_settings({"TELEMETRY_DB_PATH": str(tmp_path / "db" / "t.sqlite")})
    first = settings.secret_key()
    assert first == load_settings({"TELEMETRY_DB_PATH": str(tmp_path / "db" / "t.sqlite")}).secret_key()
    key_file = tmp_path / "db" / "secret_key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_settings_command_masks_secrets(tmp_path):
    env = {
        **os.environ,
        "TELEMETRY_BASE_DIR": str(tmp_path),
        "TELEMETRY_API_AUTH_ENABLED": "true",
        "TELEMETRY_API_AUTH_TOKEN": "very-secret-token",
        "TELEMETRY_DATABASE_URL": "postgresql://user:hunter2@db.example/telemetry",
    }
    out = subprocess.run([sys.executable, "-m", "console", "settings"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "very-secret-token" not in out.stdout and "hunter2" not in out.stdout
    assert "user:***@db.example" in out.stdout


def test_bad_setting_stops_a_command_with_one_line_and_no_traceback(tmp_path):
    env = {**os.environ, "TELEMETRY_BASE_DIR": str(tmp_path), "TELEMETRY_API_PORT": "eighty"}
    out = subprocess.run([sys.executable, "-m", "console", "serve"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "TELEMETRY_API_PORT='eighty'" in out.stderr and "Traceback" not in out.stderr


def test_with_base_dir_and_db_path_both_set_backups_and_the_secret_key_go_under_the_base_dir(tmp_path):
    """docs/operations.md: `{base}/backups/`; the base directory wins when it is set."""
    base, db_file = tmp_path / "base", tmp_path / "elsewhere" / "telemetry.sqlite"
    env = {**os.environ, "TELEMETRY_BASE_DIR": str(base), "TELEMETRY_DB_PATH": str(db_file)}
    env.pop("TELEMETRY_SECRET_KEY", None)
    env.pop("TELEMETRY_DATABASE_URL", None)
    for command in (["db", "upgrade"], ["backup"]):
        out = subprocess.run([sys.executable, "-m", "console", *command], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (command, out.stderr)
    assert [p.parent for p in (base / "backups").glob("telemetry-*.sqlite")] == [base / "backups"]
    assert not (db_file.parent / "backups").exists()
    settings = load_settings({"TELEMETRY_BASE_DIR": str(base), "TELEMETRY_DB_PATH": str(db_file)})
    settings.secret_key()
    assert (base / "secret_key").exists() and not (db_file.parent / "secret_key").exists()
