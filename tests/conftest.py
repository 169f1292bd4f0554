"""Fixtures shared by every test: databases on both backends, the app, real servers.

Each test gets a clean database: a SQLite file under tmp_path (copied from a
migrated template), or the session's PostgreSQL database with every table emptied.
PostgreSQL is the server named by TELEMETRY_TEST_DATABASE_URL, else a throw-away one
started from the `pgserver` package. No PostgreSQL at all is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from console.app import create_app
from console.core.settings import load_settings
from console.store import migrate
from tests.helpers import ConsoleProcess, free_port

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory) -> str:
    """A PostgreSQL server URL (SQLAlchemy form) where test databases may be created."""
    url = os.environ.get("TELEMETRY_TEST_DATABASE_URL")
    if url:
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgserver"), cleanup_mode="stop")
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/tmp/...
    yield uri.replace("postgresql://", "postgresql+psycopg://", 1)
    server.cleanup()


def _with_database(url: str, name: str) -> str:
    parsed = sa.engine.make_url(url)
    return parsed.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_database_url(pg_admin_url) -> str:
    """A database created for this test session, migrated to head, dropped after it."""
    name = f"lt_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = _with_database(pg_admin_url, name)
    migrate.upgrade(load_settings({"TELEMETRY_DATABASE_URL": url}))
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "telemetry.sqlite"
    migrate.upgrade(load_settings({"TELEMETRY_DB_PATH": str(path)}))
    return path


def empty_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = conn.execute(
            sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
        ).scalars().all()
        if tables:
            conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def env(backend, request, tmp_path) -> dict[str, str]:
    """TELEMETRY_* variables for a clean database on `backend`."""
    values = {"TELEMETRY_BASE_DIR": str(tmp_path / "base"), "TELEMETRY_SECRET_KEY": "test-secret"}
    if backend == "sqlite":
        path = tmp_path / "db" / "telemetry.sqlite"
        path.parent.mkdir(parents=True)
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        values["TELEMETRY_DB_PATH"] = str(path)
    else:
        url = request.getfixturevalue("pg_database_url")
        empty_postgres(url)
        values["TELEMETRY_DATABASE_URL"] = url
    return values


@pytest.fixture
def settings(env):
    return load_settings(env)


@pytest.fixture
def app(settings):
    app = create_app(settings, {"TESTING": True})
    yield app
    app.extensions["telemetry_db"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db(app):
    return app.extensions["telemetry_db"]


@pytest.fixture
def slow_idle_catch_up(monkeypatch):
    """SQLite: keep single POSTs uncounted (above the insert watermark) until something
    else catches them up, instead of the group commit's writer when it goes idle."""
    from console.domain import group_commit

    monkeypatch.setattr(group_commit, "CATCH_UP_IDLE_SECONDS", 60.0)


@pytest.fixture
def console_server(env, tmp_path):
    """The real `python -m console serve` on a free loopback port."""
    process = ConsoleProcess({**env, "TELEMETRY_API_PORT": str(free_port())}, tmp_path / "console.log")
    process.start()
    yield process
    process.stop()
