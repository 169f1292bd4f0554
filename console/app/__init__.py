"""The app factory: create_app() wires settings → database → logs → middleware → API and pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from flask import Flask

from console.core.files import restrict_umask
from console.core.logs import configure_logging
from console.core.settings import Settings, load_settings
from console.store.db import Database

# Static files and templates live in the `console` package (console/static, console/templates).
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


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
    restrict_umask()  # also when a WSGI server other than `serve` loads wsgi.py
    settings = settings or load_settings()
    app = Console("console", root_path=str(PACKAGE_ROOT), static_folder="static", template_folder="templates")
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

    from console.api import init_app as init_api
    from console.http import middleware, origin
    from console.web import init_app as init_web

    configure_logging(settings.log_level, settings.log_format)
    middleware.init_app(app)
    origin.init_app(app)
    init_api(app)
    init_web(app)
    return app
