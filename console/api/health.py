"""Liveness, versions, and the API's own description (/openapi.json, /docs)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import flask_swagger_ui
from flask import current_app, send_from_directory
from pydantic import BaseModel

from console import __version__
from console.api import root_bp
from console.api.openapi import build_document
from console.api.spec import route
from console.http.context import storage_facts

API_VERSION = "3.0.0"

# Swagger UI 5's built files (it reads OpenAPI 3.1), shipped inside the flask-swagger-ui package.
SWAGGER_UI_DIST = Path(flask_swagger_ui.__file__).resolve().parent / "dist"


class AuthOut(BaseModel):
    """Whether API writes and reads need a bearer token."""

    writes: bool
    reads: bool


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str
    api_version: str
    database: Literal["sqlite", "postgresql"]
    journal_mode: Optional[str]
    synchronous: Optional[str]
    schema_revision: Optional[str]
    auth: AuthOut


class VersionOut(BaseModel):
    api_version: str
    app_version: str
    schema_revision: Optional[str]


@route(root_bp, "/health", "GET", summary="Liveness and storage facts", tags=["health"],
       responses={200: HealthOut}, auth="open", prefix="", operation_id="get_health")
def health():
    facts = storage_facts(current_app)
    settings = current_app.config["SETTINGS"]
    auth = {"writes": settings.auth_enabled, "reads": settings.auth_enabled and settings.auth_reads}
    return {"status": "ok", "version": API_VERSION, "api_version": API_VERSION, **facts, "auth": auth}


@route(root_bp, "/version", "GET", summary="Versions of the API, the app and the schema", tags=["health"],
       responses={200: VersionOut}, auth="open", prefix="", operation_id="get_version")
def version():
    facts = storage_facts(current_app)
    return {"api_version": API_VERSION, "app_version": __version__, "schema_revision": facts["schema_revision"]}


@root_bp.get("/openapi.json")
def openapi_document():
    settings = current_app.config["SETTINGS"]
    return build_document(__version__, auth_enabled=settings.auth_enabled, auth_reads=settings.auth_reads)


@root_bp.get("/docs")
def docs_page():
    return current_app.send_static_file("docs.html")


@root_bp.get("/docs/assets/<path:name>")
def docs_assets(name: str):
    """Swagger UI's files, served from its package (never from a CDN)."""
    return send_from_directory(str(SWAGGER_UI_DIST), name)
