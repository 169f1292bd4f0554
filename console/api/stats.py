"""GET /api/v1/stats: per agent and overall, from the rollups."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal, Optional

from flask import current_app
from pydantic import BaseModel, Field

from console.api import api_bp
from console.api.spec import route
from console.core.timeutil import parse_timestamp
from console.domain.stats import bucket_count, range_start, run_stats
from console.http.context import get_db
from console.http.errors import ApiError
from console.store import reconcile

KEPT_BUCKETS = 20_000  # about 1 MB of JSON: a larger answer (every agent by hour) is not worth the memory


class StatsQuery(BaseModel):
    agent_name: Optional[str] = Field(None, min_length=1, max_length=1000)
    since: Optional[str] = Field(None, description="date or time (UTC when no zone); default 7 days ago")
    bucket: Literal["hour", "day"] = "day"


class StatsBucket(BaseModel):
    start: str
    counts: dict[str, int]


class StatsBlock(BaseModel):
    total: int
    counts: dict[str, int]
    success_rate: Optional[float]
    avg_duration_ms: Optional[int]
    p50_ms: Optional[int]
    p95_ms: Optional[int]
    items: dict[str, int]
    buckets: list[StatsBucket]


class StatsOut(BaseModel):
    since: str
    bucket: Literal["hour", "day"]
    overall: StatsBlock
    agents: dict[str, StatsBlock]


@route(
    api_bp,
    "/stats",
    "GET",
    summary="Counts, success rate, p50/p95 durations per agent and overall",
    tags=["stats"],
    query=StatsQuery,
    responses={200: StatsOut, 400: None},
)
def get_stats(query: StatsQuery) -> Any:
    since = None
    if query.since:
        try:
            since = parse_timestamp(query.since, require_zone=False)
        except ValueError as exc:
            raise ApiError(400, f"since: {exc}") from None
    since = range_start(since)
    db = get_db(current_app)
    reconcile.ensure_fresh(db)
    with db.read() as session:
        # Kept until the next commit (a dashboard asks every few seconds), unless large.
        return db.answers.answer(
            session,
            ("stats", query.agent_name, since, query.bucket),
            partial(run_stats, agent_name=query.agent_name, since=since, bucket=query.bucket),
            keep=lambda answer: bucket_count(answer) <= KEPT_BUCKETS,
        )
