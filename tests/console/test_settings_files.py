"""Secrets from files: `<NAME>_FILE` (Docker / Kubernetes secrets) for every secret setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from console.app import create_app
from console.core.settings import (
    _SPEC,
    MAX_SECRET_FILE_BYTES,
    SECRET_ATTRIBUTES,
    SettingsError,
    file_variables,
    load_settings,
)
from tests.helpers import ROOT

VALID = {
    "TELEMETRY_API_AUTH_TOKEN": "tok-1,tok-2",
    "TELEMETRY_SECRET_KEY": "a-long-secret-key",
    "TELEMETRY_EXPORT_WEBHOOK_TOKEN": "hook-token",
    "TELEMETRY_EXPORT_WEBHOOK_SECRET": "hook-secret",
    "GOOGLE_SHEETS_API_TOKEN": "sheet-token",
    "TELEMETRY_EXPORT_OTLP_HEADERS": "api-key=otlp-secret",
    "TELEMETRY_DATABASE_URL": "postgresql+psycopg://u:pw-from-file@db:5432/t",
}


def test_every_secret_setting_can_come_from_a_file():
    secret_names = {name for name, (attr, _p, _d) in _SPEC.items() if attr in SECRET_ATTRIBUTES}
    assert secret_names <= set(file_variables()) and "TELEMETRY_DATABASE_URL" in file_variables()
    assert set(VALID) == set(file_variables())  # a new secret needs a case here


@pytest.mark.parametrize("name", sorted(VALID))
def test_a_file_gives_the_same_setting_as_the_variable_and_stays_masked(name, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(VALID[name] + "\n")  # as `echo` writes it
    from_file = load_settings({f"{name}_FILE": str(secret)})
    direct = load_settings({name: VALID[name]})
    attr = _SPEC[name][0]
    assert getattr(from_file, attr) == getattr(direct, attr)
    shown = from_file.describe()
    assert VALID[name].split(",")[0].split("=")[-1] not in str(shown)


def test_the_api_takes_a_token_read_from_a_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    settings = load_settings({"TELEMETRY_DB_PATH": str(tmp_path / "t.sqlite"), "TELEMETRY_API_AUTH_ENABLED": "true",
                              "TELEMETRY_API_AUTH_TOKEN_FILE": str(token_file), "TELEMETRY_API_AUTH_READS": "true"})
    from console.store import migrate

    migrate.upgrade(settings)
    app = create_app(settings, {"TESTING": True})
    try:
        client = app.test_client()
        assert client.get("/api/v1/runs").status_code == 401
        assert client.get("/api/v1/runs", headers={"Authorization": "Bearer file-token"}).status_code == 200
        assert client.get("/api/v1/runs", headers={"Authorization": "Bearer file-tok"}).status_code == 401
    finally:
        app.extensions["telemetry_db"].dispose()


def test_both_the_variable_and_its_file_is_refused(tmp_path):
    secret = tmp_path / "s"
    secret.write_text("x")
    with pytest.raises(SettingsError, match="TELEMETRY_SECRET_KEY and TELEMETRY_SECRET_KEY_FILE are both set"):
        load_settings({"TELEMETRY_SECRET_KEY": "y", "TELEMETRY_SECRET_KEY_FILE": str(secret)})


def test_unreadable_oversized_or_binary_files_are_refused_by_name(tmp_path):
    with pytest.raises(SettingsError, match="TELEMETRY_SECRET_KEY_FILE=.*cannot be read"):
        load_settings({"TELEMETRY_SECRET_KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings({"TELEMETRY_SECRET_KEY_FILE": str(tmp_path)})  # a directory
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * (MAX_SECRET_FILE_BYTES + 1))
    with pytest.raises(SettingsError, match="larger than"):
        load_settings({"TELEMETRY_SECRET_KEY_FILE": str(huge)})
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SettingsError, match="not UTF-8"):
        load_settings({"TELEMETRY_SECRET_KEY_FILE": str(binary)})


def test_a_file_with_a_bad_value_is_refused_without_echoing_it(tmp_path):
    url = tmp_path / "url"
    url.write_text("mysql://u:hunter2@db/x")
    with pytest.raises(SettingsError) as caught:
        load_settings({"TELEMETRY_DATABASE_URL_FILE": str(url)})
    assert "TELEMETRY_DATABASE_URL" in str(caught.value) and "hunter2" not in str(caught.value)


def test_a_missing_secret_file_stops_a_command_with_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'sdk'}:{ROOT}", "TELEMETRY_DB_PATH": str(tmp_path / "t.sqlite"),
           "TELEMETRY_API_AUTH_TOKEN_FILE": str(tmp_path / "nope")}
    done = subprocess.run([sys.executable, "-m", "console", "settings"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: TELEMETRY_API_AUTH_TOKEN_FILE=") and "Traceback" not in done.stderr
