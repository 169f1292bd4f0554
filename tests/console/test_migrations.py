"""Alembic owns the schema: up and down on both backends, and adoption of a v7 file."""

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from console.core.settings import load_settings
from console.store import migrate
from tests.console.legacy import build_legacy_file

ROOT = Path(__file__).resolve().parents[2]
OUR_TABLES = {"agent_runs", "run_events", "commits", "ingested_lines", "audit_log"}


def run_cli(*args, env):
    return subprocess.run([sys.executable, "-m", "console", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_the_history_has_exactly_one_head():
    heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
    assert len(heads) == 1, f"several heads: {heads}; chain the newest revision onto the previous one"


def test_upgrade_from_empty_then_downgrade_to_base_on_sqlite(tmp_path):
    env = {"TELEMETRY_DB_PATH": str(tmp_path / "t.sqlite")}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    settings = load_settings(env)
    assert OUR_TABLES <= table_names(settings.database_url)
    assert migrate.current_revision(settings) == migrate.head_revision()
    down = run_cli("db", "downgrade", "base", env=env)
    assert down.returncode == 0, down.stderr
    assert table_names(settings.database_url) <= {"alembic_version"}
    assert run_cli("db", "upgrade", env=env).returncode == 0


@contextlib.contextmanager
def empty_postgres_database(pg_admin_url: str, name: str):
    """The URL of a new, empty PostgreSQL database `name`, dropped afterwards."""
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield sa.engine.make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def test_upgrade_and_downgrade_on_postgresql(pg_admin_url):
    with empty_postgres_database(pg_admin_url, "lt_migrations_test") as url:
        env = {"TELEMETRY_DATABASE_URL": url}
        up = run_cli("db", "upgrade", env=env)
        assert up.returncode == 0, up.stderr
        assert OUR_TABLES <= table_names(url)
        assert run_cli("db", "current", env=env).stdout.strip() == migrate.head_revision()
        down = run_cli("db", "downgrade", "base", env=env)
        assert down.returncode == 0, down.stderr
        assert table_names(url) <= {"alembic_version"}
        assert run_cli("db", "upgrade", env=env).returncode == 0


def test_adopting_a_v7_file_keeps_every_row_and_fixes_keys_and_times(tmp_path):
    path = tmp_path / "legacy.sqlite"
    counts = build_legacy_file(path, runs=3000)
    result = run_cli("db", "upgrade", env={"TELEMETRY_DB_PATH": str(path)})
    assert result.returncode == 0, result.stderr

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys = ON")
    for table, expected in counts.items():
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == expected, table
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []

    # Every sortable time is in the one UTC text form, so text order is time order.
    for column in ("created_at", "updated_at", "start_time"):
        bad = conn.execute(
            f"SELECT count(*) FROM agent_runs WHERE {column} NOT GLOB "
            "'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]+00:00'"
        ).fetchone()[0]
        assert bad == 0, column
    # The row written with the column default (datetime('now')) is the newest; then the
    # others in the order of their times, whatever form and offset they were written in.
    newest_first = [r[0] for r in conn.execute("SELECT event_id FROM agent_runs ORDER BY created_at DESC LIMIT 5")]
    assert newest_first == ["evt-default", "evt-002999", "evt-002998", "evt-002997", "evt-002996"]

    # A JSON string that held JSON was unwrapped.
    wrapped = conn.execute("SELECT metrics_json FROM agent_runs WHERE metrics_json LIKE '%wrapped%' LIMIT 1").fetchone()
    assert wrapped[0].startswith("{")

    # Events hang on a real key now: deleting a run works with foreign keys on and takes its events.
    event_id, run_id = conn.execute(
        "SELECT r.event_id, r.run_id FROM agent_runs r JOIN run_events e ON e.event_id = r.event_id LIMIT 1"
    ).fetchone()
    conn.execute("DELETE FROM agent_runs WHERE event_id = ?", (event_id,))
    conn.commit()
    assert conn.execute("SELECT count(*) FROM run_events WHERE event_id = ?", (event_id,)).fetchone()[0] == 0
    conn.close()


def test_0020_leaves_list_indexes_an_operator_built_online(pg_admin_url):
    with empty_postgres_database(pg_admin_url, "lt_migration_0020") as url:
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            _check_0020(engine, {"TELEMETRY_DATABASE_URL": url})
        finally:
            engine.dispose()


def _check_0020(engine, env) -> None:
    def definitions() -> dict[str, tuple[int, str]]:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT indexname, indexrelid::int, indexdef FROM pg_indexes JOIN pg_class c ON c.relname = indexname "
                "JOIN pg_index ON indexrelid = c.oid WHERE tablename = 'agent_runs' "
                "AND indexname IN ('idx_runs_status', 'idx_runs_agent_status_created', 'idx_runs_agent_created')"
            ).all()
        return {name: (oid, definition) for name, oid, definition in rows}

    assert run_cli("db", "upgrade", "0019", env=env).returncode == 0
    assert not any(d.endswith(", id)") for _, d in definitions().values())
    with engine.connect() as conn:  # the online path: built concurrently, swapped by rename
        conn.exec_driver_sql("CREATE INDEX CONCURRENTLY idx_new ON agent_runs (status, created_at DESC, id)")
        conn.exec_driver_sql("DROP INDEX CONCURRENTLY idx_runs_status")
        conn.exec_driver_sql("ALTER INDEX idx_new RENAME TO idx_runs_status")
    online = definitions()["idx_runs_status"]
    up = run_cli("db", "upgrade", env=env)
    assert up.returncode == 0, up.stderr
    after = definitions()
    assert after["idx_runs_status"] == online  # left as built
    assert all(d.endswith(", id)") for _, d in after.values()), after
    down = run_cli("db", "downgrade", "0019", env=env)
    assert down.returncode == 0, down.stderr
    assert not any(d.endswith(", id)") for _, d in definitions().values())
