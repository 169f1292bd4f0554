"""The JSON API: /api/v1 plus /health, /metrics, /version, /openapi.json and /docs."""

from __future__ import annotations

from flask import Blueprint, Flask

from console.http import errors

api_bp = Blueprint("api", __name__, url_prefix="/api/v1")
root_bp = Blueprint("api_root", __name__)


def init_app(app: Flask) -> None:
    # Importing the route modules registers their views on the blueprints.
    from console.api import alerts, events, health, ingest, metadata, metrics, runs, stale, stats  # noqa: F401

    errors.init_app(app)
    app.register_blueprint(api_bp)
    app.register_blueprint(root_bp)
