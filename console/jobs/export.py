"""Export ("API posting"): post ended runs to webhooks, a Google Sheets web app and OTLP.

An OTLP destination receives each run as a span (console/jobs/otlp.py, docs/otel.md);
a run whose parent is not stored yet waits up to otlp.PARENT_WAIT, unclaimed.

Per run and destination, a row in `export_state` (pending, posted, rejected,
gave_up; attempts; tries; last status and error). One attempt = up to four HTTP
tries, after 1 s, 2 s and 4 s, on network errors, timeouts, 5xx, 408 and 429; any
other 4xx is final (rejected). After TELEMETRY_EXPORT_MAX_ATTEMPTS attempts that
failed, the destination gives up on that run. Each attempt is claimed first with a
conditional UPDATE (healthchecks' sendalerts model), so two processes never post
the same run to the same place at once. A run's own `status` is never changed;
`api_posted` (every destination posted it), `api_posted_at` and `api_retry_count`
(tries that did not succeed) follow the state. A destination posts only runs that
ended after it was first configured, unless `export --backfill`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from console.core.settings import Settings, url_origin
from console.core.timeutil import format_utc, utcnow
from console.domain.records import run_to_dict
from console.jobs import history, otlp
from console.jobs.tables import export_destinations, export_state
from console.store.db import Database
from console.store.models import agent_runs

log = logging.getLogger("console.jobs.export")

RETRY_DELAYS = (1, 2, 4)
# A run quiet for this long, neither running nor pending, is settled: the scan
# watermark may pass it (ids are not allocated in commit order on PostgreSQL).
SETTLED_AFTER = timedelta(minutes=10)
# After this many failed attempts in a row, a pass stops posting to that destination.
DOWN_AFTER = 3
RETRYABLE_STATUS = {408, 429}
# Answers to the POST that say it was taken: Apps Script answers 302 (or 303) and
# serves the result elsewhere. Other redirects are never followed: 307 and 308 would
# re-send the run, with its token, to wherever the Location points.
TAKEN_REDIRECTS = {302, 303}
BATCH = 200


@dataclass(frozen=True)
class Destination:
    key: str  # stable name in export_state: "webhook:<hash of the URL>", "otlp:<hash>" or "sheets"
    kind: str  # webhook | sheets | otlp
    url: str
    label: str  # scheme and host only: a webhook's path is often its secret
    token: str = ""
    secret: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class PostResult:
    outcome: str  # posted | rejected | failed
    tries: int
    status: int | None = None
    error: str | None = None


def destinations(settings: Settings) -> list[Destination]:
    """The configured destinations, in a stable order."""
    out = []
    for url in settings.export_webhook_urls:
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        out.append(Destination(f"webhook:{digest}", "webhook", url, _label(url),
                               settings.export_webhook_token, settings.export_webhook_secret))
    if settings.google_sheets_enabled and settings.google_sheets_url:
        out.append(Destination("sheets", "sheets", settings.google_sheets_url, _label(settings.google_sheets_url),
                               settings.google_sheets_token))
    if settings.export_otlp_endpoint:
        url = settings.export_otlp_endpoint
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        out.append(Destination(f"otlp:{digest}", "otlp", url, _label(url), headers=settings.export_otlp_headers))
    return out


def _label(url: str) -> str:
    return url_origin(url)


def scheduled_export(db: Database, settings: Settings) -> dict[str, Any]:
    """The scheduled job: one pass over what is still unposted."""
    return export_pending(db, settings)


def export_pending(db: Database, settings: Settings, *, backfill: bool = False, now: datetime | None = None,
                   sleep: Callable[[float], None] = time.sleep, http: requests.Session | None = None,
                   limit: int = BATCH) -> dict[str, Any]:
    """Post every pending ended run once to each destination (one attempt each); return counts."""
    dests = destinations(settings)
    counts = {"posted": 0, "rejected": 0, "retrying": 0, "gave_up": 0, "tries": 0, "deferred": 0,
              "waiting": 0, "destinations": len(dests)}
    if not dests:
        return counts
    clock = (lambda: now) if now is not None else utcnow
    db.write(lambda s: register_destinations(s, dests, clock(), backfill=backfill))
    timeout = settings.export_timeout_ms / 1000
    hold = timedelta(seconds=(len(RETRY_DELAYS) + 1) * (timeout + 1) + sum(RETRY_DELAYS) + 5)
    own_http = http is None
    http = http or requests.Session()
    try:
        _post_all(db, settings, dests, counts, http, clock, hold, timeout, sleep, limit)
    finally:
        if own_http:
            http.close()
    return counts


def _post_all(db: Database, settings: Settings, dests: list[Destination], counts: dict[str, int],
              http: requests.Session, clock: Callable[[], datetime], hold: timedelta, timeout: float,
              sleep: Callable[[float], None], limit: int) -> None:
    keys = [d.key for d in dests]
    for dest in dests:
        with db.read() as session:
            since, scan_from = session.execute(
                sa.select(export_destinations.c.since, export_destinations.c.scan_from_id)
                .where(export_destinations.c.destination == dest.key)).one()
            candidates = _candidates(session, dest.key, since, scan_from, clock(), limit)
        failing = 0
        for index, event_id in enumerate(candidates):
            if failing >= DOWN_AFTER:
                # The destination looks down: leave the rest for the next pass, attempts unspent.
                counts["deferred"] += len(candidates) - index
                log.warning("export to %s: %d attempts failed in a row; %d run(s) left for the next pass",
                            dest.label, failing, len(candidates) - index)
                break
            if dest.kind == "otlp" and _waits_for_parent(db, event_id, clock()):
                counts["waiting"] += 1
                continue
            if not db.write(lambda s, e=event_id, k=dest.key: claim_attempt(s, e, k, clock(), hold)):
                continue
            with db.read() as session:
                row = session.execute(sa.select(agent_runs).where(agent_runs.c.event_id == event_id)).mappings().first()
                run = run_to_dict(row, settings.git_hosts) if row else None
                body = _otlp_body(session, row) if row is not None and dest.kind == "otlp" else None
            if run is None:  # deleted meanwhile; its state row went with it
                continue
            result = post_with_retry(http, dest, run, timeout, sleep, body=body)
            state = db.write(lambda s, e=event_id, r=result, k=dest.key: record_attempt(
                s, e, k, r, settings.export_max_attempts, keys, clock()))
            counts["tries"] += result.tries
            failing = failing + 1 if result.outcome == "failed" else 0
            counts[{"pending": "retrying"}.get(state, state)] += 1
            if state in ("rejected", "gave_up"):
                log.warning("export of run %s to %s: %s (%s %s)", event_id, dest.label, state, result.status,
                            result.error)
        if len(candidates) < limit and failing < DOWN_AFTER:  # the scan reached the end: move the watermark
            db.write(lambda s, k=dest.key, f=scan_from: advance_watermark(s, k, f, clock()))


def _waits_for_parent(db: Database, event_id: str, now: datetime) -> bool:
    with db.read() as session:
        row = session.execute(sa.select(agent_runs).where(agent_runs.c.event_id == event_id)).mappings().first()
        return row is not None and otlp.waits_for_parent(otlp.span_ids(session, row), row, now)


def _otlp_body(session: Session, row) -> bytes:
    from console import __version__

    return otlp.export_request(session, row, otlp.span_ids(session, row), __version__)


def register_destinations(session: Session, dests: list[Destination], now: datetime, backfill: bool = False) -> None:
    """Remember when each destination was first configured (backfill: post every ended run)."""
    known = set(session.execute(sa.select(export_destinations.c.destination)).scalars())
    for dest in dests:
        if dest.key not in known:
            # Runs to come, and those running now, may end after this moment: scan from the first of them.
            first_open = session.execute(
                sa.select(sa.func.min(agent_runs.c.id)).where(agent_runs.c.status == "running")).scalar()
            after_last = (session.execute(sa.select(sa.func.max(agent_runs.c.id))).scalar() or 0) + 1
            session.execute(export_destinations.insert().values(
                destination=dest.key, kind=dest.kind, label=dest.label, first_configured_at=now,
                since=None if backfill else now,
                scan_from_id=0 if backfill else min(first_open or after_last, after_last)))
        elif backfill:
            session.execute(export_destinations.update().where(export_destinations.c.destination == dest.key)
                            .values(since=None, scan_from_id=0))


def _joined(key: str):
    return agent_runs.outerjoin(export_state, sa.and_(export_state.c.event_id == agent_runs.c.event_id,
                                                      export_state.c.destination == key))


def _candidates(session: Session, key: str, since: datetime | None, scan_from: int, now: datetime,
                limit: int) -> list[str]:
    state = export_state
    query = (
        sa.select(agent_runs.c.event_id)
        .select_from(_joined(key))
        .where(agent_runs.c.id >= scan_from, agent_runs.c.status != "running")
        .where(sa.or_(state.c.event_id.is_(None),
                      sa.and_(state.c.state == "pending",
                              sa.or_(state.c.claimed_until.is_(None), state.c.claimed_until < now))))
        .order_by(agent_runs.c.id)
        .limit(limit)
    )
    if since is not None:
        # Only runs that ended after the destination appeared, and not already posted everywhere.
        query = query.where(sa.func.coalesce(agent_runs.c.end_time, agent_runs.c.updated_at) >= since,
                            sa.func.coalesce(agent_runs.c.api_posted, 0) == 0)
    return list(session.execute(query).scalars())


def advance_watermark(session: Session, key: str, scan_from: int, now: datetime) -> int:
    """Move the destination's scan start past every settled run; return the new start."""
    quiet_since = now - SETTLED_AFTER
    low = session.execute(
        sa.select(sa.func.min(agent_runs.c.id)).select_from(_joined(key))
        .where(agent_runs.c.id >= scan_from,
               sa.or_(agent_runs.c.status == "running", export_state.c.state == "pending",
                      agent_runs.c.updated_at >= quiet_since))
    ).scalar()
    if low is None:
        low = (session.execute(sa.select(sa.func.max(agent_runs.c.id))).scalar() or scan_from - 1) + 1
    low = max(low, scan_from)
    session.execute(export_destinations.update().where(export_destinations.c.destination == key,
                                                       export_destinations.c.scan_from_id < low)
                    .values(scan_from_id=low))
    return low


def claim_attempt(session: Session, event_id: str, key: str, now: datetime, hold: timedelta) -> bool:
    """Claim one attempt at (run, destination) with a conditional UPDATE; False if someone else has it."""
    exists = session.execute(sa.select(export_state.c.state).where(
        export_state.c.event_id == event_id, export_state.c.destination == key)).first()
    if exists is None:
        try:
            with session.begin_nested():
                session.execute(export_state.insert().values(event_id=event_id, destination=key, state="pending",
                                                             attempts=0, tries=0))
        except IntegrityError:
            return False
    result = session.execute(
        export_state.update()
        .where(export_state.c.event_id == event_id, export_state.c.destination == key,
               export_state.c.state == "pending",
               sa.or_(export_state.c.claimed_until.is_(None), export_state.c.claimed_until < now))
        .values(claimed_until=now + hold)
    )
    return result.rowcount == 1


def record_attempt(session: Session, event_id: str, key: str, result: PostResult, max_attempts: int,
                   all_keys: list[str], now: datetime) -> str:
    """Store an attempt's outcome and bring the run's api_* columns up to date; return the new state."""
    current = session.execute(sa.select(export_state).where(
        export_state.c.event_id == event_id, export_state.c.destination == key)).mappings().first()
    if current is None:
        return "pending"
    attempts = current["attempts"] + 1
    if result.outcome == "posted":
        state = "posted"
    elif result.outcome == "rejected":
        state = "rejected"
    else:
        state = "gave_up" if attempts >= max_attempts else "pending"
    session.execute(
        export_state.update()
        .where(export_state.c.event_id == event_id, export_state.c.destination == key)
        .values(state=state, attempts=attempts, tries=current["tries"] + result.tries, last_status=result.status,
                last_error=result.error, claimed_until=None, last_tried_at=now,
                first_tried_at=current["first_tried_at"] or now,
                posted_at=now if state == "posted" else current["posted_at"])
    )
    rows = session.execute(sa.select(export_state).where(export_state.c.event_id == event_id)).mappings().all()
    by_key = {row["destination"]: row for row in rows}
    all_posted = all(k in by_key and by_key[k]["state"] == "posted" for k in all_keys)
    failed_tries = sum(row["tries"] for row in rows) - sum(1 for row in rows if row["state"] == "posted")
    values: dict[str, Any] = {"api_retry_count": max(0, failed_tries)}
    if all_posted:
        values["api_posted"] = 1
        values["api_posted_at"] = format_utc(max(by_key[k]["posted_at"] for k in all_keys))
    session.execute(agent_runs.update().where(agent_runs.c.event_id == event_id).values(**values))
    return state


def post_with_retry(http: requests.Session, dest: Destination, run: dict[str, Any], timeout: float,
                    sleep: Callable[[float], None] = time.sleep, body: bytes | None = None) -> PostResult:
    """One attempt: up to four tries (after 1 s, 2 s, 4 s) while the failure may pass."""
    body = _body(dest, run) if body is None else body
    tries = 0
    status: int | None = None
    error: str | None = None
    for delay in (0, *RETRY_DELAYS):
        if delay:
            sleep(delay)
        tries += 1
        try:
            response = http.post(dest.url, data=body, headers=_headers(dest, run, body), timeout=timeout,
                                 allow_redirects=False)
        except requests.RequestException as exc:
            status, error = None, f"{type(exc).__name__}: {_no_url(str(exc), dest.url)}"[:500]
            continue
        status = response.status_code
        if 200 <= status < 300 or status in TAKEN_REDIRECTS:
            refused = otlp.partial_rejection(response.content) if dest.kind == "otlp" else None
            if refused:
                return PostResult("rejected", tries, status, refused[:500])
            return PostResult("posted", tries, status)
        if 300 <= status < 400:
            return PostResult("rejected", tries, status,
                              f"redirect {status} not followed: configure the URL it points to")
        error = _no_url(response.text or response.reason or "", dest.url)[:500]
        if status >= 500 or status in RETRYABLE_STATUS:
            continue
        return PostResult("rejected", tries, status, error)
    return PostResult("failed", tries, status, error)


def _body(dest: Destination, run: dict[str, Any]) -> bytes:
    if dest.kind == "sheets":
        # An Apps Script web app cannot read request headers: the token travels in the body.
        payload: dict[str, Any] = {**run}
        if dest.token:
            payload["token"] = dest.token
    else:
        payload = {"type": "run.ended", "sent_at": format_utc(utcnow()), "run": run}
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


def _headers(dest: Destination, run: dict[str, Any], body: bytes) -> dict[str, str]:
    from console import __version__

    delivery = f"{run['event_id']}:{dest.key}"
    content_type = otlp.CONTENT_TYPE if dest.kind == "otlp" else "application/json"
    headers = {**dict(dest.headers), "Content-Type": content_type, "User-Agent": f"local-telemetry/{__version__}",
               "Idempotency-Key": delivery, "X-Telemetry-Delivery": delivery}
    if dest.kind == "webhook" and dest.token:
        headers["Authorization"] = f"Bearer {dest.token}"
    if dest.secret:
        stamp = str(int(time.time()))
        digest = hmac.new(dest.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        headers["X-Telemetry-Timestamp"] = stamp
        headers["X-Telemetry-Signature"] = f"sha256={digest}"
    return headers


def _no_url(text: str, url: str) -> str:
    """Error text without the URL's path or query (the secret of many webhooks).

    requests names the whole URL in some errors and only its path in others
    ("Max retries exceeded with url: /services/T0/B0/XXXX").
    """
    parts = urlsplit(url)
    text = text.replace(url, _label(url))
    for secret in (f"{parts.path}?{parts.query}" if parts.query else "", parts.path, parts.query):
        if len(secret) > 1:
            text = text.replace(secret, "/***")
    return text


def export_states(session: Session, event_id: str) -> list[dict[str, Any]]:
    """The export state of one run per destination, for the run detail page."""
    labels = dict(session.execute(sa.select(export_destinations.c.destination, export_destinations.c.label)).all())
    rows = session.execute(sa.select(export_state).where(export_state.c.event_id == event_id)
                           .order_by(export_state.c.destination)).mappings().all()
    return [{**row, "label": labels.get(row["destination"], row["destination"])} for row in rows]


def retry_export(session: Session, event_id: str, destination: str | None = None) -> int:
    """Make a rejected or given-up export pending again ("retry now"); return how many."""
    query = export_state.update().where(export_state.c.event_id == event_id,
                                        export_state.c.state.in_(("rejected", "gave_up", "pending")))
    if destination:
        query = query.where(export_state.c.destination == destination)
    count = session.execute(query.values(state="pending", attempts=0, claimed_until=None)).rowcount
    if count:  # the scan must reach this run again
        run_id = session.execute(sa.select(agent_runs.c.id).where(agent_runs.c.event_id == event_id)).scalar()
        lower = export_destinations.update().where(export_destinations.c.scan_from_id > run_id)
        if destination:
            lower = lower.where(export_destinations.c.destination == destination)
        session.execute(lower.values(scan_from_id=run_id))
        # "Now": ask the leader for an export pass rather than wait for the schedule.
        history.request_run(session, "export", "retry")
    return count
