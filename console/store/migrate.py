"""Schema upgrades under a lock, so that several workers or hosts never race one."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from console.core.locks import file_lock
from console.core.settings import Settings
from console.store.db import make_plain_engine

ROOT = Path(__file__).resolve().parents[2]
# An installed wheel carries the revisions as console/migrations (pyproject.toml maps
# the checkout's migrations/ there); a checkout has them at its root.
PACKAGED_MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
# Any constant will do; it names "the migration" among advisory locks.
PG_MIGRATION_LOCK = 0x6C74_6D67


def migrations_dir() -> Path:
    """Where the Alembic revisions are: inside the installed package, else the checkout's root."""
    return PACKAGED_MIGRATIONS if PACKAGED_MIGRATIONS.is_dir() else ROOT / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    ini = ROOT / "alembic.ini"
    config = Config(str(ini)) if ini.is_file() else Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _run_locked(settings: Settings, action) -> None:
    engine = make_plain_engine(settings)
    try:
        if settings.is_sqlite:
            with file_lock(settings.lock_path("upgrade")):
                with engine.connect() as connection:
                    action(connection)
        else:
            with engine.connect() as lock_conn:
                lock_conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_MIGRATION_LOCK})
                lock_conn.commit()
                try:
                    with engine.connect() as connection:
                        action(connection)
                finally:
                    lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_MIGRATION_LOCK})
                    lock_conn.commit()
    finally:
        engine.dispose()


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the schema to `revision` (adopting an older tool's file if need be)."""
    _run_locked(settings, lambda conn: command.upgrade(alembic_config(conn), revision))


def downgrade(settings: Settings, revision: str) -> None:
    _run_locked(settings, lambda conn: command.downgrade(alembic_config(conn), revision))


def current_revision(settings: Settings) -> str | None:
    engine = make_plain_engine(settings)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def history() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [f"{rev.revision}: {rev.doc.splitlines()[0] if rev.doc else ''}" for rev in script.walk_revisions()]
