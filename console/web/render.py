"""One rule for full page versus partial, and the Vary header that goes with it."""

from __future__ import annotations

from typing import Any

from flask import current_app, make_response, render_template


def wants_partial() -> bool:
    """True for an htmx swap; a boosted navigation or a history restore gets the full page."""
    htmx = current_app.htmx
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def render(page: str, partial: str, status: int = 200, **context: Any):
    """Render `partial` alone for an htmx swap, else the whole `page` (which includes it)."""
    template = partial if wants_partial() else page
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response


def page(template: str, status: int = 200, **context: Any):
    """A page that has no partial of its own (still varies on HX-Request for caches)."""
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response
