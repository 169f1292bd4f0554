"""POST /api/v1/ingest: the SDK's spool lines, per-line outcomes."""

from __future__ import annotations

from typing import Annotated, Any, Optional, Union

from flask import current_app
from pydantic import BaseModel, RootModel, WithJsonSchema
from sqlalchemy.exc import DBAPIError

from console.api import api_bp
from console.api.spec import route
from console.domain.ingest import ingest, prepare
from console.domain.spool_lines import SpoolLine, parse_lines
from console.http.context import get_db
from console.http.errors import ApiError
from console.store.db import DatabaseUnavailable, describe_unavailable
from console.store.writelock import queued_write


class IngestBody(
    RootModel[
        Annotated[
            list[Any],
            WithJsonSchema({"type": "array", "items": SpoolLine.model_json_schema(), "description": "spool lines v1"}),
        ]
    ]
):
    """A JSON array of spool lines; each line is checked on its own."""


class Rejection(BaseModel):
    index: int
    id: Optional[str]
    detail: Union[str, list[dict[str, Any]]]


class IngestOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[Rejection]


@route(
    api_bp,
    "/ingest",
    "POST",
    summary="Apply a batch of spool lines (idempotent per line id)",
    tags=["ingest"],
    body=IngestBody,
    responses={200: IngestOut},
    auth="write",
    scope="agent",
    operation_id="ingest",
)
def ingest_lines(body: IngestBody):
    lines = body.root
    settings = current_app.config["SETTINGS"]
    if len(lines) > settings.max_batch_items:
        raise ApiError(413, f"{len(lines)} lines in one request; the limit is {settings.max_batch_items}")
    db = get_db(current_app)
    # Validate and fold before the transaction: that work need not hold the write lock.
    prepared = prepare(parse_lines(lines), dialect=db.dialect)
    try:
        result = queued_write(db, lambda session: ingest(session, prepared=prepared), shared=True)
    except (DBAPIError, db.engine.dialect.dbapi.Error) as exc:  # the lean paths raise the driver's own
        # ingest() rejects the lines the database refuses; what still fails is the database
        # itself (read-only, full, broken): the whole request, to be retried later.
        raise DatabaseUnavailable(describe_unavailable(exc)) from exc
    return result.as_dict()

