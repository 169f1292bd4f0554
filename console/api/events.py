"""A run's timeline and heartbeats: GET/POST /runs/{event_id}/events, POST /runs/{event_id}/heartbeat."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional, Union
from urllib.parse import urlencode

from flask import current_app, request
from pydantic import BaseModel, Field, RootModel

from console.api import api_bp
from console.api.spec import NEXT_PAGE_LINK, OPERATIONS, not_found, parse_body, route
from console.core.timeutil import format_utc
from console.domain.events import BadCursor, RunNotFound, add_events, list_events, record_heartbeat
from console.domain.validation import Identifier, JSONValue, Timestamp
from console.http.context import get_db
from console.http.errors import ApiError
from console.http.middleware import read_body


class EventsQuery(BaseModel):
    limit: int = Field(100, ge=1, le=1000)
    cursor: Optional[str] = Field(None, max_length=512)


class EventOut(BaseModel):
    id: int
    event_type: str
    timestamp: str
    payload: Any = None


class EventIn(BaseModel):
    event_type: Identifier
    timestamp: Optional[Timestamp] = None
    payload: JSONValue = None
    id: Optional[Identifier] = None


class EventsIn(RootModel[Union[EventIn, list[EventIn]]]):
    """One event object or an array of them."""


class EventsCreated(BaseModel):
    inserted: int
    duplicates: int


class HeartbeatIn(BaseModel):
    timestamp: Optional[Timestamp] = None


class HeartbeatOut(BaseModel):
    event_id: str
    last_heartbeat_at: Optional[str]


def next_link(cursor: str) -> str:
    """The absolute URL of the next page, keeping the other query arguments."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor"]
    args.append(("cursor", cursor))
    return f'<{request.base_url}?{urlencode(args)}>; rel="next"'


@route(
    api_bp,
    "/runs/<event_id>/events",
    "GET",
    summary="A run's events, oldest first (keyset pages)",
    tags=["events"],
    query=EventsQuery,
    responses={200: list[EventOut], 400: None},
    operation_id="list_events",
    headers={200: {"Link": NEXT_PAGE_LINK}},
)
def get_events(event_id: str, query: EventsQuery):
    try:
        with get_db(current_app).read() as session:
            items, cursor = list_events(session, event_id, limit=query.limit, cursor=query.cursor)
    except RunNotFound:
        not_found()
    except BadCursor as exc:
        raise ApiError(400, str(exc)) from None
    headers = {"Link": next_link(cursor)} if cursor else {}
    return items, 200, headers


@route(
    api_bp,
    "/runs/<event_id>/events",
    "POST",
    summary="Add events to a run (idempotent on id)",
    tags=["events"],
    body=EventsIn,
    responses={201: EventsCreated},
    auth="write",
    scope="agent",
    operation_id="create_events",
)
def post_events(event_id: str, body: EventsIn):
    items = body.root if isinstance(body.root, list) else [body.root]
    settings = current_app.config["SETTINGS"]
    if len(items) > settings.max_batch_items:
        raise ApiError(413, f"{len(items)} events in one request; the limit is {settings.max_batch_items}")
    try:
        inserted, duplicates = get_db(current_app).write(
            lambda session: add_events(session, event_id, [item.model_dump() for item in items])
        )
    except RunNotFound:
        not_found()
    return {"inserted": inserted, "duplicates": duplicates}, 201


@route(
    api_bp,
    "/runs/<event_id>/heartbeat",
    "POST",
    summary="Say that a run is alive",
    tags=["events"],
    responses={200: HeartbeatOut, 400: None, 422: None},
    auth="write",
    scope="agent",
    operation_id="record_heartbeat",
)
def post_heartbeat(event_id: str):
    # The body is optional (`curl -X POST .../heartbeat` means "now"), so it is parsed here.
    body = parse_body(HeartbeatIn) if read_body().strip() else HeartbeatIn()
    try:
        beat: datetime = get_db(current_app).write(lambda session: record_heartbeat(session, event_id, body.timestamp))
    except RunNotFound:
        not_found()
    return {"event_id": event_id, "last_heartbeat_at": format_utc(beat) if beat else None}


# Documented (not required): the route parses its optional body itself.
OPERATIONS[-1].body = HeartbeatIn
