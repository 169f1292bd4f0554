"""Per-request plumbing: request ids, body size limit, NUL in URLs and forms, security headers."""

from __future__ import annotations

import uuid

from flask import Flask, current_app, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from console.core.logs import current_request_id
from console.domain.bounded_json import BAD_CHARS
from console.http.errors import ApiError, error_response, wants_json

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

# Directives that default-src does not cover: no <base> may re-point relative URLs,
# forms post only here, and no plugin content.
_LOCKED = "base-uri 'none'; form-action 'self'; object-src 'none'; frame-ancestors 'none'"
PAGE_POLICY = f"default-src 'self'; {_LOCKED}"
DOCS_POLICY = f"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; {_LOCKED}"


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)

    @app.before_request
    def assign_request_id():
        g.request_id = (request.headers.get("X-Request-ID") or "")[:128] or uuid.uuid4().hex
        # Every line logged while this request is served carries its id.
        g.request_id_token = current_request_id.set(g.request_id)

    @app.teardown_request
    def forget_request_id(_exc):
        token = g.pop("request_id_token", None)
        if token is not None:
            current_request_id.reset(token)

    @app.before_request
    def refuse_nul_in_url():
        # PostgreSQL cannot hold U+0000 in text: a NUL in a path or filter would be a
        # 500 from the driver. No stored value can contain one, so refuse it up front.
        if "\x00" in request.path or b"%00" in request.query_string or b"\x00" in request.query_string:
            return _refusal(400, "the URL contains a NUL character (%00), which no stored value can contain")
        return None

    @app.before_request
    def refuse_oversized_body():
        # Answered before a byte of the body is read; the worker then ends the
        # connection (console/server/worker.py). A chunked body has no length: reading
        # it stops at MAX_CONTENT_LENGTH (werkzeug), which is a 413 too.
        length = request.content_length
        if length is not None and length > settings.max_body_bytes:
            return _refusal(413, f"request body is {length} bytes; the limit is {settings.max_body_bytes} bytes")
        return None

    @app.before_request
    def refuse_nul_in_form():
        # The pages' forms, as the URL above: a NUL in any field would reach the database
        # (a 500 on PostgreSQL, stored on SQLite). Checked after the size limit. The API
        # reads JSON only (a form is its 415): its body is left unread here.
        if request.mimetype not in FORM_TYPES or wants_json():
            return None
        for key, values in request.form.lists():
            if BAD_CHARS.search(key) or any(BAD_CHARS.search(value) for value in values):
                return _refusal(400, "a form field contains a NUL character, which no stored value can contain")
        return None

    @app.after_request
    def add_headers(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.path.startswith("/docs"):
            # Swagger UI sets inline styles; only /docs gets this looser policy.
            policy = DOCS_POLICY
        else:
            policy = PAGE_POLICY
        response.headers.setdefault("Content-Security-Policy", policy)
        # Links to other sites get no Referer: a page's URL holds its filters and ids.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


def read_body() -> bytes:
    """The request's body, whole; a 413 when a body without Content-Length reaches the limit.

    werkzeug stops reading a chunked body quietly at MAX_CONTENT_LENGTH (its 413
    comes only with a further read): the cut body would otherwise pass for the whole.
    """
    raw = request.get_data(cache=True)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if limit is not None and request.content_length is None and len(raw) >= limit:
        raise ApiError(413, f"request body (chunked, no Content-Length) reached the limit of {limit} bytes")
    return raw


def _refusal(status: int, detail: str):
    """An early refusal: JSON on API paths, plain text on pages."""
    if wants_json():
        return error_response(status, detail)
    return current_app.response_class(detail, status=status, mimetype="text/plain")

