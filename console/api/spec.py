"""Routes that validate with pydantic models and describe themselves in OpenAPI.

`route(bp, rule, ...)` registers a view on the blueprint and records, from the same
models that validate the request, what the OpenAPI document says of it. Nothing in
/openapi.json is written by hand.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from flask import Blueprint, abort, request
from pydantic import BaseModel, ValidationError

from console.domain.validation import BodyError, error_details, parse_json_body
from console.http.errors import ApiError
from console.http.middleware import read_body


@dataclass
class Operation:
    path: str
    method: str
    summary: str
    tags: list[str]
    body: Any = None
    query: Optional[type[BaseModel]] = None
    responses: dict[int, Any] = field(default_factory=dict)
    auth: str = "read"  # read | write | open
    scope: str = "operator"  # who may write: agent | operator
    operation_id: str = ""  # the name client generators give the call
    headers: dict[int, dict[str, str]] = field(default_factory=dict)  # status -> header -> description


OPERATIONS: list[Operation] = []

# The `Link` header of a list answer that has a further page.
NEXT_PAGE_LINK = (
    'Present when a further page exists: `<URL>; rel="next"`, the same query with the opaque `cursor` '
    "of the next page. Follow it until the header is absent."
)

# Every API operation may answer these, whatever it does.
COMMON_ERRORS = {401, 413, 415, 429, 500, 503}


def openapi_path(rule: str) -> str:
    """Flask's `<name>` placeholders in OpenAPI's `{name}` form."""
    return rule.replace("<", "{").replace(">", "}").replace("{path:", "{")


def route(
    bp: Blueprint,
    rule: str,
    method: str,
    *,
    summary: str,
    tags: list[str],
    body: Any = None,
    query: Optional[type[BaseModel]] = None,
    responses: dict[int, Any],
    auth: str = "read",
    scope: str = "operator",
    prefix: str = "/api/v1",
    operation_id: Optional[str] = None,
    headers: Optional[dict[int, dict[str, str]]] = None,
) -> Callable:
    """Register `view` for `method rule`; it is called with `body=` and/or `query=` models.

    `auth` says when a token is needed (console/http/auth.py); `scope` which token may
    write: `agent` for what agents record, `operator` (the default, so a new route is
    closed to agents until it says otherwise) for everything else.

    The OpenAPI operationId is `operation_id`, else the view's name.
    """
    if scope not in ("agent", "operator"):
        raise ValueError(f"scope must be agent or operator, not {scope!r}")

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(**kwargs):
            if query is not None:
                kwargs["query"] = parse_query(query)
            if body is not None:
                kwargs["body"] = parse_body(body)
            return view(**kwargs)

        wrapper.telemetry_auth = auth
        wrapper.telemetry_scope = scope
        bp.add_url_rule(rule, view_func=wrapper, methods=[method], endpoint=f"{view.__name__}")
        OPERATIONS.append(
            Operation(openapi_path(prefix + rule), method.lower(), summary, tags, body, query, responses, auth, scope,
                      operation_id or view.__name__, headers or {})
        )
        return wrapper

    return decorator


def read_json() -> Any:
    """The request's JSON document, or an ApiError (400, 415, 422) saying why not."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, "Content-Type must be application/json")
    raw = read_body()
    if not raw.strip():
        raise ApiError(400, "request body is empty; send a JSON document")
    try:
        return parse_json_body(raw)
    except BodyError as exc:
        raise ApiError(400, str(exc)) from None
    except ValueError as exc:
        raise ApiError(422, [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]) from None


def parse_body(model: Any) -> Any:
    """Validate the JSON body with `model` (a pydantic model or a TypeAdapter-able type)."""
    document = read_json()
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise ApiError(422, error_details(exc)) from None


def parse_query(model: type[BaseModel]) -> BaseModel:
    values: dict[str, Any] = {}
    for key in request.args:
        items = request.args.getlist(key)
        values[key] = items if len(items) > 1 else items[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ApiError(422, error_details(exc, prefix=("query",))) from None


def not_found(what: str = "run") -> None:
    abort(404, description=f"{what} not found")
