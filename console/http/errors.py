"""One error shape for the API: `{"detail": ...}` with the right status."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from console.store.db import DatabaseUnavailable

log = logging.getLogger("console.api")

JSON_PREFIXES = ("/api/", "/health", "/metrics", "/version", "/openapi.json")


class ApiError(Exception):
    """An answer other than success, with its status and detail."""

    def __init__(self, status: int, detail, headers: dict | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def error_response(status: int, detail, headers: dict | None = None):
    response = jsonify(detail=detail)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES)


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def on_api_error(exc: ApiError):
        return error_response(exc.status, exc.detail, exc.headers)

    @app.errorhandler(DatabaseUnavailable)
    def on_unavailable(exc: DatabaseUnavailable):
        log.warning("database unavailable: %s", exc)
        return error_response(503, str(exc), {"Retry-After": "5"})

    @app.errorhandler(HTTPException)
    def on_http_error(exc: HTTPException):
        if not wants_json():
            return exc
        headers = {}
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        return error_response(exc.code or 500, exc.description or exc.name, headers)

    @app.errorhandler(Exception)
    def on_unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        if wants_json():
            return error_response(500, "internal server error")
        return "Internal Server Error", 500
