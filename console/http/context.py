"""The database of the app serving a request, and what /health and /version say of it."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import text

from console.store.db import Database


def get_db(app: Flask) -> Database:
    return app.extensions["telemetry_db"]


def storage_facts(app: Flask) -> dict[str, Any]:
    """What /health and /version say of the storage."""
    db = get_db(app)
    facts: dict[str, Any] = {"database": db.dialect, "journal_mode": None, "synchronous": None}
    # Reading goes to the database every time: an unreachable one is a 503 from
    # db.read(), never a cheerful "ok".
    with db.read() as session:
        if db.dialect == "sqlite":
            # Upper case, as configured (DELETE, WAL): monitors compare these strings.
            facts["journal_mode"] = str(session.execute(text("PRAGMA journal_mode")).scalar()).upper()
            level = session.execute(text("PRAGMA synchronous")).scalar()
            facts["synchronous"] = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(level, str(level))
        has_version_table = session.connection().dialect.has_table(session.connection(), "alembic_version")
        facts["schema_revision"] = (
            session.execute(text("SELECT version_num FROM alembic_version")).scalar() if has_version_table else None
        )
    return facts
