"""Local Telemetry console: create_app() wires settings → db → blueprints → errors → CLI."""

from __future__ import annotations

from typing import Any, Optional

from flask import Flask
from sqlalchemy import text

from .db import Database
from .settings import Settings, load_settings

__version__ = "0.1.0"


class Console(Flask):
    """Flask, answering `ensure_sync` once per function.

    Flask asks `inspect` whether each hook and view is a coroutine function on
    every request (ten times per POST); none of ours changes between requests.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._sync_callables: dict[Any, Any] = {}

    def ensure_sync(self, func):
        found = self._sync_callables.get(func)
        if found is None:
            found = self._sync_callables[func] = super().ensure_sync(func)
        return found


def create_app(settings: Optional[Settings] = None, test_config: Optional[dict[str, Any]] = None) -> Flask:
    """Build the console. No threads are started here (the scheduler is `serve`'s)."""
    settings = settings or load_settings()
    app = Console(__name__, static_folder="static", template_folder="../templates")
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key(),
        JSON_SORT_KEYS=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        # Chunked bodies without a length are cut off here too.
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
    )
    app.json.sort_keys = False
    if test_config:
        app.config.update(test_config)

    app.extensions["telemetry_db"] = Database(settings)

    from . import logs, middleware
    from .api import init_app as init_api
    from .web import init_app as init_web

    logs.init_app(app)
    middleware.init_app(app)
    init_api(app)
    init_web(app)
    return app


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
            facts["journal_mode"] = session.execute(text("PRAGMA journal_mode")).scalar()
            level = session.execute(text("PRAGMA synchronous")).scalar()
            facts["synchronous"] = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(level, str(level))
        has_version_table = session.connection().dialect.has_table(session.connection(), "alembic_version")
        facts["schema_revision"] = (
            session.execute(text("SELECT version_num FROM alembic_version")).scalar() if has_version_table else None
        )
    return facts
