"""No Docker engine here: the compose files, .dockerignore and labels are read, `*_FILE` is run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import console
from console.core.settings import SettingsError, load_settings, secret_file_variables

ROOT = Path(__file__).resolve().parents[2]


def compose(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def merged(*files: str) -> dict:
    """Services as `docker compose -f a -f b` merges them: mappings by key, later files win."""
    services: dict = {}
    for name in files:
        for service, body in compose(name)["services"].items():
            target = services.setdefault(service, {})
            for key, value in body.items():
                if isinstance(value, dict) and isinstance(target.get(key), dict):
                    target[key] = {**target[key], **value}
                else:
                    target[key] = value
    return services


def test_plain_compose_up_needs_no_postgres():
    services = compose("docker-compose.yml")["services"]
    assert set(services) == {"console"}
    assert "depends_on" not in services["console"]
    assert "profiles" not in services["console"]


def test_the_postgres_file_sets_the_url_and_waits_for_a_healthy_database():
    services = merged("docker-compose.yml", "docker-compose.postgres.yml")
    console_service, postgres = services["console"], services["postgres"]
    url = console_service["environment"]["TELEMETRY_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://telemetry:") and url.endswith("@postgres:5432/telemetry")
    assert console_service["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert "profiles" not in postgres  # started whenever the file is used
    assert "ports" not in postgres  # reached by the console only
    # The loopback-only default the network test checks is untouched by the override.
    assert console_service["ports"] == ["${TELEMETRY_PUBLISH:-127.0.0.1:8765}:8765"]
    # The password in the URL and the database's own come from the same variable.
    assert "${TELEMETRY_POSTGRES_PASSWORD:-telemetry}" in url
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "${TELEMETRY_POSTGRES_PASSWORD:-telemetry}"


def test_dockerignore_keeps_the_venv_history_and_caches_out_of_the_build_context():
    patterns = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".venv", ".git", "**/__pycache__", ".pytest_cache", ".ruff_cache", "tests", "*.sqlite"} <= patterns
    # Nothing the Dockerfile copies is ignored.
    copied = re.findall(r"^COPY (.+?) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    for path in " ".join(copied).split():
        assert path not in patterns and path.split("/")[0] not in patterns, path


def test_the_dockerfile_carries_the_oci_labels_with_the_version_from_a_build_arg():
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    labels = dict(re.findall(r"(org\.opencontainers\.image\.\w+)=\"([^\"]*)\"", text))
    assert set(labels) >= {f"org.opencontainers.image.{k}" for k in ("title", "description", "source", "licenses", "version")}
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert re.search(rf"^ARG VERSION={re.escape(console.__version__)}$", text, re.M)
    assert text.index("ARG VERSION") > text.index("FROM ")  # an ARG before FROM would not reach LABEL


def settings_cli(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    return subprocess.run([sys.executable, "-m", "console", "settings"], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_secrets_are_read_from_files_and_never_printed(tmp_path):
    token, password = "op-token-7f3a9c", "pg-pass-55e1"
    (tmp_path / "tokens").write_text(f"{token}\n")
    (tmp_path / "url").write_text(f"postgresql://telemetry:{password}@db.internal:5432/telemetry\n")
    result = settings_cli({
        "TELEMETRY_BASE_DIR": str(tmp_path),
        "TELEMETRY_API_AUTH_ENABLED": "true",
        "TELEMETRY_OPERATOR_TOKENS_FILE": str(tmp_path / "tokens"),
        "TELEMETRY_DATABASE_URL_FILE": str(tmp_path / "url"),
    })
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["TELEMETRY_OPERATOR_TOKENS"] == "***"  # read (auth on needs a token), masked
    assert shown["(database)"] == "postgresql+psycopg://telemetry:***@db.internal:5432/telemetry"
    for secret in (token, password):
        assert secret not in result.stdout and secret not in result.stderr


def test_the_value_is_the_file_with_its_trailing_newline_stripped(tmp_path):
    (tmp_path / "key").write_text("  spaced key \n")
    (tmp_path / "tokens").write_text("a,b\r\n")
    settings = load_settings({"TELEMETRY_SECRET_KEY_FILE": str(tmp_path / "key"),
                              "TELEMETRY_AGENT_TOKENS_FILE": str(tmp_path / "tokens")})
    assert settings.agent_tokens == ("a", "b")
    assert settings.secret_key() == "spaced key"  # the setting's own parsing still applies


# Secrets with a shape of their own; any other takes a plain token.
FILE_VALUES = {"TELEMETRY_DATABASE_URL": "sqlite:////tmp/x.sqlite", "TELEMETRY_EXPORT_OTLP_HEADERS": "authorization=Bearer%20x"}


def test_every_masked_setting_accepts_a_file(tmp_path):
    names = secret_file_variables()
    assert {"TELEMETRY_DATABASE_URL", "TELEMETRY_OPERATOR_TOKENS", "TELEMETRY_AGENT_TOKENS",
            "TELEMETRY_SECRET_KEY", "TELEMETRY_EXPORT_WEBHOOK_SECRET", "GOOGLE_SHEETS_API_TOKEN"} <= set(names)
    described = load_settings({}).describe()
    for name in names:
        path = tmp_path / name
        path.write_text(FILE_VALUES.get(name, "value-from-file") + "\n")
        loaded = load_settings({f"{name}_FILE": str(path)}).describe()
        assert loaded[name] != described[name], name


BAD_FILES = {  # what TELEMETRY_AGENT_TOKENS_FILE names -> what the error says
    "missing": "cannot be read",
    ".": "regular file",
    "/dev/zero": "regular file",
    "big": "larger than",
    "binary": "not UTF-8",
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_bad_secret_file_is_one_clear_error(tmp_path, name):
    (tmp_path / "big").write_bytes(b"t" * (64 * 1024 + 1))
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SettingsError, match=BAD_FILES[name]) as caught:
        load_settings({"TELEMETRY_AGENT_TOKENS_FILE": str(tmp_path / name)})
    assert "\n" not in str(caught.value) and "TELEMETRY_AGENT_TOKENS_FILE" in str(caught.value)


def test_a_value_and_a_file_for_one_setting_is_an_error(tmp_path):
    (tmp_path / "f").write_text("y\n")
    with pytest.raises(SettingsError, match="both set: set only one"):
        load_settings({"TELEMETRY_AGENT_TOKENS": "x", "TELEMETRY_AGENT_TOKENS_FILE": str(tmp_path / "f")})


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = settings_cli({"TELEMETRY_BASE_DIR": str(tmp_path), "TELEMETRY_SECRET_KEY_FILE": str(fifo)})
    assert result.returncode == 2 and "regular file" in result.stderr


def test_both_set_through_the_cli_is_a_clear_error_that_names_no_value(tmp_path):
    (tmp_path / "t").write_text("from-file-123\n")
    result = settings_cli({"TELEMETRY_BASE_DIR": str(tmp_path), "TELEMETRY_OPERATOR_TOKENS": "from-env-456",
                           "TELEMETRY_OPERATOR_TOKENS_FILE": str(tmp_path / "t")})
    assert result.returncode == 2
    assert "TELEMETRY_OPERATOR_TOKENS and TELEMETRY_OPERATOR_TOKENS_FILE are both set" in result.stderr
    assert "from-file-123" not in result.stderr + result.stdout and "from-env-456" not in result.stderr + result.stdout
