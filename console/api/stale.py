"""Stale runs: GET /runs/stale and POST /runs/mark-failed."""

from __future__ import annotations

from typing import Any, Optional

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field, model_validator

from console.api import api_bp
from console.api.spec import route
from console.core.timeutil import utcnow
from console.domain.records import run_to_dict
from console.domain.stale import list_stale, mark_stale_runs_failed, silent_seconds
from console.domain.validation import Identifier, Text
from console.http.auth import api_actor
from console.http.context import get_db


class StaleQuery(BaseModel):
    older_than_minutes: Optional[int] = Field(None, ge=0, le=10_000_000)
    limit: int = Field(1000, ge=1, le=10_000)


class StaleRun(BaseModel):
    model_config = ConfigDict(extra="allow")
    event_id: str
    status: str
    silent_seconds: float


class MarkFailedIn(BaseModel):
    event_ids: Optional[list[Identifier]] = Field(None, max_length=10_000)
    older_than_minutes: Optional[int] = Field(None, ge=0, le=10_000_000)
    reason: Optional[Text] = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _one_selector(self) -> MarkFailedIn:
        if (self.event_ids is None) == (self.older_than_minutes is None):
            raise ValueError("give either event_ids or older_than_minutes")
        return self


class MarkFailedOut(BaseModel):
    count: int
    event_ids: list[str]
    skipped: list[str]


@route(
    api_bp,
    "/runs/stale",
    "GET",
    summary="Running runs silent longer than N minutes, oldest first",
    tags=["stale"],
    query=StaleQuery,
    responses={200: list[StaleRun]},
    operation_id="list_stale_runs",
)
def get_stale(query: StaleQuery):
    settings = current_app.config["SETTINGS"]
    minutes = settings.stale_threshold_minutes if query.older_than_minutes is None else query.older_than_minutes
    now = utcnow()
    with get_db(current_app).read() as session:
        rows = list_stale(session, minutes, now=now, limit=query.limit)
    hosts = settings.git_hosts
    out: list[dict[str, Any]] = []
    for row in rows:
        record = run_to_dict(row, hosts)
        record["silent_seconds"] = silent_seconds(row, now)
        out.append(record)
    return out


@route(
    api_bp,
    "/runs/mark-failed",
    "POST",
    summary="Mark still-running runs failed (stale verdict)",
    tags=["stale"],
    body=MarkFailedIn,
    responses={200: MarkFailedOut},
    auth="write",
    operation_id="mark_runs_failed",
)
def post_mark_failed(body: MarkFailedIn):
    actor = api_actor()
    changed, skipped = get_db(current_app).write(
        lambda session: mark_stale_runs_failed(
            session,
            event_ids=body.event_ids,
            older_than_minutes=body.older_than_minutes,
            reason=body.reason,
            actor=actor,
        )
    )
    return {"count": len(changed), "event_ids": changed, "skipped": skipped}
