"""The console's HTML pages and htmx partials (blueprint `web`).

Views are thin: they read the request, call the domain (console.domain.runs, console.domain.stale,
console.domain.stats, ...) and hand plain data to templates; templates never query.
"""

from __future__ import annotations

from pathlib import Path

import js_lib_htmx
from flask import Blueprint, Flask, make_response, redirect, request, send_from_directory, url_for
from flask_htmx import HTMX

from console.domain.errors import NotFound
from console.store.db import DatabaseUnavailable
from console.web import auth as web_auth
from console.web import formatting
from console.web.render import page, wants_partial

web_bp = Blueprint("web", __name__)

HTMX_DIR = Path(js_lib_htmx.__file__).resolve().parent / "static" / "htmx"
# Endpoints reachable without a login when auth is on.
OPEN_ENDPOINTS = {"web.login", "web.htmx_js"}

NAVIGATION = [
    ("web.runs", "Runs"),
    ("web.stale", "Stale"),
    ("web.agents", "Agents"),
    ("web.jobs", "Jobs"),
    ("web.alerts", "Alerts"),
]


@web_bp.get("/assets/htmx.min.js")
def htmx_js():
    """htmx itself, served from the installed package (never vendored, never a CDN)."""
    return send_from_directory(HTMX_DIR, "htmx.min.js", mimetype="text/javascript", max_age=3600)


@web_bp.before_request
def require_login():
    if not web_auth.auth_required() or request.endpoint in OPEN_ENDPOINTS:
        return None
    if web_auth.current_user() is not None:
        return None
    target = url_for("web.login", next=request.full_path.rstrip("?"))
    if wants_partial():
        # An htmx swap would put the login page inside the table: send the browser there.
        response = make_response("", 401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target, 303)


@web_bp.before_request
def protect_forms():
    web_auth.check_csrf()


@web_bp.after_request
def no_shared_caching(response):
    # Pages carry a CSRF token and maybe a login: never from a shared or back-forward cache.
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@web_bp.errorhandler(NotFound)
def on_not_found(exc: NotFound):
    return page("404.html", 404, detail=exc.detail)


@web_bp.errorhandler(404)
def on_404(exc):
    return page("404.html", 404, detail=getattr(exc, "description", "not found"))


@web_bp.errorhandler(400)
def on_400(exc):
    return page("error.html", 400, title="Bad request", detail=exc.description)


@web_bp.errorhandler(DatabaseUnavailable)
def on_unavailable(exc: DatabaseUnavailable):
    response = page("error.html", 503, title="Database busy", detail=str(exc))
    response.headers["Retry-After"] = "5"
    return response


def init_app(app: Flask) -> None:
    """Register the pages, their filters and the login/CSRF plumbing."""
    from console.web import agents, alerts, auth_views, jobs, run_detail, runs, stale  # noqa: F401  (register views)

    HTMX(app)
    formatting.register(app)
    web_auth.init_app(app)

    @app.context_processor
    def navigation():
        user = web_auth.current_user() if web_auth.auth_required() else None
        return {"navigation": NAVIGATION, "current_user": user, "auth_on": web_auth.auth_required(),
                "open_incident_count": alerts.open_incident_count()}

    app.register_blueprint(web_bp)
