"""Alembic environment: the database comes from the console's settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from console.core.settings import load_settings
from console.store.db import make_plain_engine
from console.store.models import metadata

config = context.config
target_metadata = metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_plain_engine(load_settings())
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    if is_sqlite:
        # Table rebuilds (batch mode, adoption) need foreign keys off; this pragma
        # only takes effect outside a transaction, so it goes to the raw connection.
        # Checked again at the end.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite,
        compare_type=True,
        # SQLite can roll DDL back too: an upgrade (an adoption included) is all or nothing.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    if connection.in_transaction():
        connection.commit()
    if is_sqlite:
        problems = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
        connection.commit()
        connection.connection.driver_connection.execute("PRAGMA foreign_keys = ON")
        if problems:
            raise RuntimeError(f"foreign key check failed after migration: {problems[:5]}")


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
