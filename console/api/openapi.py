"""The OpenAPI 3.1 document, assembled from the models that validate each route."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

from console.api.spec import COMMON_ERRORS, OPERATIONS

REF = "#/components/schemas/{model}"

ERROR_SCHEMA = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["loc", "msg", "type"],
                        "properties": {
                            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                            "msg": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                },
            ]
        }
    },
}

ERROR_TEXT = {
    400: "Bad request",
    401: "Missing or wrong bearer token",
    403: "Token not allowed here (an agent token on an operator route), or a cross-site request",
    404: "Not found",
    413: "Body too large",
    415: "Wrong content type",
    422: "Validation error",
    429: "Rate limited",
    500: "Unexpected error",
    503: "Database unavailable; retry after Retry-After seconds",
}


def _schema(annotation: Any, defs: dict[str, Any], mode: str) -> dict[str, Any]:
    if annotation is None:
        return {}
    if isinstance(annotation, dict):
        return annotation
    schema = TypeAdapter(annotation).json_schema(ref_template=REF, mode=mode)
    defs.update(schema.pop("$defs", {}))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        defs[annotation.__name__] = schema
        return {"$ref": REF.format(model=annotation.__name__)}
    return schema


def _parameters(op, defs) -> list[dict[str, Any]]:
    params = []
    for name in _path_names(op.path):
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    if op.query is not None:
        schema = op.query.model_json_schema(ref_template=REF, mode="validation")
        defs.update(schema.pop("$defs", {}))
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    return params


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


BEARER = "bearerAuth"


def needs_token(auth: str, *, auth_enabled: bool, auth_reads: bool) -> bool:
    """Whether an operation of access mode `auth` needs the bearer token under these settings."""
    if not auth_enabled or auth == "open":
        return False
    return auth == "write" or auth_reads


def build_document(app_version: str, *, auth_enabled: bool = False, auth_reads: bool = False) -> dict[str, Any]:
    """The whole document for every registered operation.

    Each operation's `security` says what this console's settings ask of it: the
    bearer token, or nothing (`[]`), so that Swagger UI sends the token only where needed.
    """
    defs: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        item: dict[str, Any] = {"summary": op.summary, "tags": op.tags, "operationId": op.operation_id}
        token = needs_token(op.auth, auth_enabled=auth_enabled, auth_reads=auth_reads)
        item["security"] = [{BEARER: []}] if token else []
        params = _parameters(op, defs)
        if params:
            item["parameters"] = params
        if op.body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema(op.body, defs, "validation")}},
            }
        responses: dict[str, Any] = {}
        for status, annotation in sorted(op.responses.items()):
            if status >= 400:
                continue
            entry: dict[str, Any] = {"description": "Success" if status < 300 else "Redirect"}
            if annotation is not None and status != 204:
                media = "text/plain" if annotation is str else "application/json"
                entry["content"] = {media: {"schema": {"type": "string"} if annotation is str else _schema(annotation, defs, "serialization")}}
            if status in op.headers:
                entry["headers"] = {
                    name: {"description": text, "schema": {"type": "string"}} for name, text in op.headers[status].items()
                }
            responses[str(status)] = entry
        errors = set(COMMON_ERRORS) | {s for s in op.responses if s >= 400}
        if op.body is not None or op.query is not None:
            errors |= {400, 422}
        if "{" in op.path:
            errors.add(404)
        if op.auth == "open":
            errors -= {401, 429}
        if op.auth == "write":
            errors.add(403)
            item["x-telemetry-scope"] = op.scope
        for status in sorted(errors):
            responses[str(status)] = {
                "description": ERROR_TEXT.get(status, "Error"),
                "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
            }
        item["responses"] = responses
        paths.setdefault(op.path, {})[op.method] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "Local Telemetry", "version": app_version, "description": "Run telemetry API (compatible with local-telemetry HTTP API 3.0.0)."},
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of TELEMETRY_API_AUTH_TOKEN's tokens, sent as `Authorization: Bearer <token>`.",
                }
            },
        },
    }
