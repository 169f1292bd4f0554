"""No Docker engine here: the compose files, .dockerignore and image labels, read as Docker reads them."""

from __future__ import annotations

import fnmatch
import re

import sqlalchemy as sa
import yaml

import console
from console.core.settings import load_settings
from tests.helpers import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def compose(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def merged(base: dict, override: dict) -> dict:
    """Compose's merge of an override file: mappings merge key by key, other values are replaced."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def interpolate(text: str, environ: dict[str, str]) -> str:
    """Compose's `${NAME:-default}`."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: environ.get(m.group(1)) or m.group(2), text)


def test_plain_compose_up_starts_the_console_alone_on_sqlite():
    base = compose("docker-compose.yml")
    assert set(base["services"]) == {"console"}
    console_service = base["services"]["console"]
    assert "depends_on" not in console_service and "profiles" not in console_service
    assert "TELEMETRY_DATABASE_URL" not in console_service["environment"]
    assert "telemetry-data:/data" in console_service["volumes"]


def test_the_postgres_file_points_the_console_at_a_healthy_postgres():
    full = merged(compose("docker-compose.yml"), compose("docker-compose.postgres.yml"))
    services = full["services"]
    console_service, postgres = services["console"], services["postgres"]
    assert "profiles" not in postgres  # the file itself is the switch
    assert console_service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert "telemetry-data:/data" in console_service["volumes"]  # the base settings survive the merge
    for environ in ({}, {"POSTGRES_PASSWORD": "s3cret"}):
        url = sa.engine.make_url(interpolate(console_service["environment"]["TELEMETRY_DATABASE_URL"], environ))
        pg_env = {k: interpolate(v, environ) for k, v in postgres["environment"].items()}
        assert url.host == "postgres" and url.port == 5432
        assert (url.username, url.password, url.database) == (
            pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], pg_env["POSTGRES_DB"])
        settings = load_settings({"TELEMETRY_DATABASE_URL": url.render_as_string(hide_password=False)})
        assert not settings.is_sqlite
    assert set(full["volumes"]) == {"telemetry-data", "postgres-data"}


def _ignored(path: str, patterns: list[str]) -> bool:
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        core = pattern.lstrip("!").rstrip("/")
        candidates = [core, core.removeprefix("**/")]
        if any(fnmatch.fnmatch(path, c) or path.startswith(c + "/") for c in candidates) or (
                core.startswith("**/") and any(fnmatch.fnmatch(part, core[3:]) for part in path.split("/"))):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_venv_and_data_out_and_every_copied_path_in():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in (".venv", ".venv/lib/python3.11/site-packages/x.py", ".git/HEAD", "console/__pycache__/a.pyc",
                 "tests/conftest.py", "build/lib/x", "data/db/telemetry.sqlite", "x/telemetry.sqlite-wal"):
        assert _ignored(path, patterns), path
    for source in re.findall(r"^COPY (\S+)", DOCKERFILE, re.M) + ["console/templates/runs.html",
                                                                     "console/static/console.css",
                                                                     "migrations/versions/0001_baseline.py"]:
        assert not _ignored(source.rstrip("/"), patterns), source


def test_the_image_carries_oci_labels_with_the_console_version():
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[\w.]+)="([^"]*)"', DOCKERFILE))
    assert {"org.opencontainers.image.title", "org.opencontainers.image.version",
            "org.opencontainers.image.revision"} <= set(labels)
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert re.search(r"^ARG VERSION=(\S+)$", DOCKERFILE, re.M).group(1) == console.__version__
