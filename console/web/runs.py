"""Runs page: filters, status counts, keyset "older runs", the polling partial, and downloads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Optional
from urllib.parse import urlencode

from flask import Response, current_app, make_response, request, stream_with_context

from console.core.timeutil import format_utc, utcnow
from console.domain import runs, stats
from console.domain.errors import Invalid
from console.domain.records import run_to_dict
from console.domain.validation import STATUSES
from console.http.errors import error_response
from console.store import reconcile
from console.web import downloads, web_bp
from console.web import queries as web_queries
from console.web.render import render

PAGE_SIZE = 50
# Time range presets, in hours; each range starts on a whole UTC hour (so the
# status counts can come from the hourly rollups).
RANGES = {"1h": 1, "24h": 24, "7d": 24 * 7, "30d": 24 * 30}
RANGE_LABELS = {"": "Any time", "1h": "Last hour", "24h": "Last 24 h", "7d": "Last 7 days", "30d": "Last 30 days"}


@dataclass
class PageFilters:
    """The runs page's filters, as in the URL."""

    agent: str = ""
    status: str = ""
    job_type: str = ""
    host: str = ""
    environment: str = ""
    range: str = ""
    q: str = ""

    @classmethod
    def from_args(cls, args) -> PageFilters:
        return cls(**{name: (args.get(name) or "").strip()[:500] for name in cls.__dataclass_fields__})

    def query(self, **extra: str) -> str:
        """The filters (plus `extra`) as a query string, empty values left out."""
        values = {k: v for k, v in {**self.__dict__, **extra}.items() if v}
        return urlencode(values)

    def since(self):
        hours = RANGES.get(self.range)
        if hours is None:
            return None
        return utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)

    def domain(self) -> runs.RunFilters:
        """The domain's filters; Invalid for an unknown status or range."""
        if self.range and self.range not in RANGES:
            raise Invalid(f"unknown time range {self.range!r}: use one of {', '.join(RANGES)}")
        since = self.since()
        return runs.RunFilters(
            agent_name=self.agent or None,
            status=runs.parse_status_filter(self.status) if self.status else None,
            job_type=self.job_type or None,
            host=self.host or None,
            environment=self.environment or None,
            start_time_from=format_utc(since) if since else None,
            q=self.q or None,
        )

    def facets(self) -> dict[str, str]:
        """The filters on columns the rollups count runs by besides the agent (console.domain.stats.FACETS)."""
        return {name: getattr(self, name) for name in stats.FACETS if getattr(self, name)}

    @property
    def counts_from_rollups(self) -> bool:
        """The rollups can count this filter: no `q`, and at most one of agent, job type,
        host and environment (with any status and whole-hour range)."""
        return not self.q and len(self.facets()) + bool(self.agent) <= 1


def rollup_counts(session, page_filters: PageFilters) -> dict[str, int]:
    """Runs per status from the rollups (console.domain.stats) for a filter they count."""
    facet = next(iter(page_filters.facets().items()), None)
    status = runs.parse_status_filter(page_filters.status) if page_filters.status else None
    found = stats.status_counts(session, agent_name=page_filters.agent or None, facet=facet, since=page_filters.since())
    return {s: found.get(s, 0) if status in (None, s) else 0 for s in STATUSES}


def _rows(session, filters: runs.RunFilters, cursor: Optional[str] = None):
    rows, next_cursor = runs.list_runs(session, filters, limit=PAGE_SIZE, cursor=cursor)
    hosts = current_app.config["SETTINGS"].git_hosts
    return [run_to_dict(row, hosts) for row in rows], next_cursor, (rows[0] if rows else None)


def _db():
    return current_app.extensions["telemetry_db"]


@web_bp.get("/", endpoint="runs")
def runs_page():
    """The newest runs, filtered; the results block alone for an htmx swap."""
    page_filters = PageFilters.from_args(request.args)
    cursor = request.args.get("cursor") or None
    context = {"f": page_filters, "statuses": STATUSES, "ranges": RANGE_LABELS, "cursor": cursor,
               "error": None, "rows": [], "next_cursor": None, "counts": None, "capped": False, "poll_after": None,
               "download_max": downloads.MAX_ROWS}
    status = 200
    if not cursor and page_filters.counts_from_rollups:
        reconcile.ensure_fresh(_db())  # the counts come from the rollups: catch them up first
    with _db().read() as session:
        context["agents"] = runs.distinct_values(session, "agent_name")
        context["job_types"] = runs.distinct_values(session, "job_type")
        context["hosts"] = runs.distinct_values(session, "host")
        context["environments"] = runs.distinct_values(session, "environment")
        try:
            filters = page_filters.domain()
            rows, next_cursor, newest = _rows(session, filters, cursor)
            context.update(rows=rows, next_cursor=next_cursor)
            if not cursor:
                context["poll_after"] = runs.encode_cursor(newest) if newest else "start"
                if page_filters.counts_from_rollups:
                    context["counts"] = rollup_counts(session, page_filters)
        except Invalid as exc:
            context["error"] = exc.detail
            status = 400
    if cursor and not context["error"]:
        # "Older runs": the next rows, to append below the current ones.
        return render("runs.html", "_runs_rows.html", status, **context)
    return render("runs.html", "_runs_results.html", status, **context)


@web_bp.get("/runs/counts")
def runs_counts():
    """Runs per status: from the rollups when they count the filter, else deferred and capped."""
    page_filters = PageFilters.from_args(request.args)
    if page_filters.counts_from_rollups:
        reconcile.ensure_fresh(_db())
    with _db().read() as session:
        try:
            filters = page_filters.domain()
            if page_filters.counts_from_rollups:
                counts, capped = rollup_counts(session, page_filters), False
            else:
                counts, capped = web_queries.capped_status_counts(session, filters)
        except Invalid as exc:
            return render("runs_counts.html", "_runs_counts.html", 400, f=page_filters, counts=None, error=exc.detail)
    return render("runs_counts.html", "_runs_counts.html", f=page_filters, counts=counts, capped=capped,
                  statuses=STATUSES, cap=web_queries.COUNT_CAP)


@web_bp.get("/runs/new")
def runs_new():
    """Runs created after the `after` cursor, for the polling element; 204 when there are none."""
    page_filters = PageFilters.from_args(request.args)
    after = request.args.get("after", "")
    if page_filters.counts_from_rollups:
        reconcile.ensure_fresh(_db())
    with _db().read() as session:
        try:
            filters = page_filters.domain()
            if after and after != "start":
                created, _row_id = runs.decode_cursor(after)
                filters.created_after = format_utc(created)
            rows, _next, newest = _rows(session, filters)
        except Invalid:
            return make_response("", 204)
        if not rows:
            return make_response("", 204)
        counts = None
        if page_filters.counts_from_rollups:
            counts = rollup_counts(session, page_filters)
    response = make_response(render_new(rows, page_filters, runs.encode_cursor(newest), counts))
    response.vary.add("HX-Request")
    return response


def render_new(rows, page_filters, poll_after, counts):
    from flask import render_template

    return render_template("_runs_new.html", rows=rows, f=page_filters, poll_after=poll_after, counts=counts,
                           statuses=STATUSES, capped=False, new_rows=True)


@web_bp.get("/runs/download.<fmt>")
def runs_download(fmt: str):
    """The filtered runs as CSV or JSON, newest first, streamed, at most downloads.MAX_ROWS."""
    if fmt not in downloads.FORMATS:
        return error_response(404, f"no download as {fmt!r}: use one of {', '.join(downloads.FORMATS)}")
    try:
        filters = PageFilters.from_args(request.args).domain()
    except Invalid as exc:
        return error_response(400, exc.detail)
    encode = downloads.csv_chunks if fmt == "csv" else downloads.json_chunks
    pages = web_queries.run_pages(_db(), filters, downloads.MAX_ROWS)
    body = encode(pages, current_app.config["SETTINGS"].git_hosts)
    response = Response(stream_with_context(body), mimetype=downloads.FORMATS[fmt].split(";")[0])
    response.headers["Content-Type"] = downloads.FORMATS[fmt]
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    response.headers["Content-Disposition"] = f'attachment; filename="runs-{stamp}.{fmt}"'
    response.headers["X-Telemetry-Max-Rows"] = str(downloads.MAX_ROWS)
    return response
