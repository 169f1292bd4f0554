"""GET /metrics: JSON usage counts, or Prometheus / OpenMetrics text when asked for it."""

from __future__ import annotations

from typing import Any, Optional

from flask import Response, current_app, request
from pydantic import BaseModel

from console.api import root_bp
from console.api.prometheus import OPENMETRICS, PROMETHEUS_TEXT, exposition, usage
from console.api.spec import route
from console.http.context import get_db
from console.store import reconcile


class Performance(BaseModel):
    success_rate: Optional[float]
    p50_ms: Optional[int]
    p95_ms: Optional[int]
    running: int


class MetricsOut(BaseModel):
    total_runs: int
    agents: dict[str, int]
    recent_24h: int
    performance: Performance


def negotiate(accept: str) -> str:
    """JSON unless the client names text/plain or OpenMetrics explicitly (a scraper does)."""
    quality: dict[str, float] = {}
    for part in accept.split(","):
        mimetype, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        quality[mimetype.lower()] = max(q, quality.get(mimetype.lower(), 0.0))
    om, plain = quality.get("application/openmetrics-text", 0.0), quality.get("text/plain", 0.0)
    if om > 0 and om >= plain and om >= quality.get("application/json", 0.0):
        return "application/openmetrics-text"
    if plain > 0 and plain >= quality.get("application/json", 0.0):
        return "text/plain"
    return "application/json"


@route(
    root_bp,
    "/metrics",
    "GET",
    summary="Usage counts (JSON), or Prometheus text with Accept: text/plain",
    tags=["health"],
    responses={200: MetricsOut},
    auth="open",
    operation_id="get_metrics",
    prefix="",
)
def metrics() -> Any:
    wanted = negotiate(request.headers.get("Accept", ""))
    db = get_db(current_app)
    reconcile.ensure_fresh(db)
    with db.read() as session:
        if wanted == "application/json":
            return usage(session, answers=db.answers)
        settings = current_app.config["SETTINGS"]
        body = exposition(
            session,
            stale_threshold_minutes=settings.stale_threshold_minutes,
            openmetrics=wanted == "application/openmetrics-text",
            answers=db.answers,
        )
    return Response(body, mimetype=None, content_type=OPENMETRICS if "openmetrics" in wanted else PROMETHEUS_TEXT)
