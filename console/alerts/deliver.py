"""Delivery: claim each due notification, send it, record the attempt, retry with backoff.

A notification is claimed with a conditional UPDATE (`claimed_until`), as the
export claims its attempts, so two workers or two consoles never send it at
once; a claim left by a process that died expires after HOLD and the next
leader sends the same notification, with the same `notification_id`. A failed
try waits (backoff doubling from BACKOFF_FIRST, or the receiver's Retry-After)
in `next_attempt_at`, never in a sleeping thread. Each channel is worked on by
its own thread, so a channel that keeps failing delays no other.

Storms: when more than TELEMETRY_ALERT_STORM_THRESHOLD `open` notifications for
one channel were created within a minute and are due together, they are claimed
as one group (`group_key`) and sent as one notification listing them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from console.alerts import message as messages
from console.alerts.channels import Delivery, module
from console.alerts.tables import (
    alert_attempts,
    alert_channels,
    alert_counters,
    alert_incidents,
    alert_notifications,
    alert_rules,
)
from console.core.settings import Settings
from console.store.db import Database
from console.store.models import agent_runs

log = logging.getLogger("console.alerts.deliver")

BACKOFF_FIRST = timedelta(seconds=5)
BACKOFF_MAX = timedelta(hours=1)
STORM_WINDOW = timedelta(minutes=1)
# At most this many deliveries for one channel in one pass; the rest wait for the next.
PER_PASS = 50
n = alert_notifications.c


def hold(settings: Settings) -> timedelta:
    """How long a claim lasts: longer than any one send can take."""
    return timedelta(seconds=settings.alert_timeout_ms / 1000 * 2 + 10)


def backoff(attempts: int, retry_after: float | None) -> timedelta:
    if retry_after is not None:
        return timedelta(seconds=min(retry_after, 86_400))
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, attempts - 1))


def due_channels(session: Session, now: datetime) -> list[int]:
    return list(session.execute(sa.select(n.channel_id).distinct().where(
        n.state == "pending", n.next_attempt_at <= now,
        sa.or_(n.claimed_until.is_(None), n.claimed_until < now))).scalars())


def _claimable(now: datetime):
    return sa.and_(n.state == "pending", n.next_attempt_at <= now,
                   sa.or_(n.claimed_until.is_(None), n.claimed_until < now))


def claim_next(session: Session, settings: Settings, channel_id: int, now: datetime, runner: str) -> list[int]:
    """Claim the channel's next delivery: a group of notifications (a storm) or one; its row ids."""
    until = now + hold(settings)
    claim = {"claimed_until": until, "claimed_by": runner}
    # A storm's group that is due again keeps its group (and its notification_id).
    group = session.execute(sa.select(n.group_key).where(
        n.channel_id == channel_id, n.group_key.is_not(None), _claimable(now)).limit(1)).scalar()
    if group is None:
        due = session.execute(sa.select(n.id, n.notification_id, n.transition, n.created_at).where(
            n.channel_id == channel_id, _claimable(now)).order_by(n.id).limit(1000)).all()
        if not due:
            return []
        opening = [row for row in due if row.transition == "open" and row.created_at >= now - STORM_WINDOW]
        if len(opening) > settings.alert_storm_threshold:
            group = opening[0].notification_id
            session.execute(alert_notifications.update().where(
                n.id.in_([row.id for row in opening]), _claimable(now)).values(group_key=group))
        else:
            done = session.execute(alert_notifications.update().where(
                n.id == due[0].id, _claimable(now)).values(**claim))
            return [due[0].id] if done.rowcount else []
    session.execute(alert_notifications.update().where(
        n.channel_id == channel_id, n.group_key == group, _claimable(now)).values(**claim))
    return list(session.execute(sa.select(n.id).where(
        n.group_key == group, n.claimed_by == runner, n.claimed_until == until, n.state == "pending")
        .order_by(n.id)).scalars())


def build(session: Session, settings: Settings, ids: list[int], now: datetime) -> Any:
    """The message for claimed notification rows (one, or a storm's group)."""
    rows = session.execute(
        sa.select(alert_notifications, alert_incidents.c.rule_id, alert_incidents.c.agent_name,
                  alert_incidents.c.job_type, alert_incidents.c.kind, alert_incidents.c.event_id,
                  alert_incidents.c.detail, alert_incidents.c.opened_at, alert_incidents.c.resolved_at,
                  alert_rules.c.name.label("rule_name"))
        .join(alert_incidents, alert_incidents.c.id == n.incident_id)
        .join(alert_rules, alert_rules.c.id == alert_incidents.c.rule_id)
        .where(n.id.in_(ids)).order_by(n.id)).mappings().all()
    event_ids = [row["event_id"] for row in rows if row["event_id"]]
    found = {row["event_id"]: row for row in session.execute(
        sa.select(agent_runs).where(agent_runs.c.event_id.in_(event_ids))).mappings()} if event_ids else {}
    url = console_url(settings)
    documents = []
    for row in rows:
        incident = {**row, "id": row["incident_id"]}
        state = "resolved" if row["transition"] == "resolved" else "open"
        documents.append(messages.incident_document(row["notification_id"], incident, row["rule_name"], state,
                                                    now, url, found.get(row["event_id"])))
    if len(rows) == 1 and rows[0]["group_key"] is None:
        return messages.one(documents[0])
    return messages.grouped(rows[0]["group_key"], documents, now, url)


def console_url(settings: Settings) -> str:
    if settings.alert_console_url:
        return settings.alert_console_url.rstrip("/")
    return f"http://{settings.api_host}:{settings.api_port}"


def record(session: Session, settings: Settings, ids: list[int], channel_kind: str, result: Delivery,
           now: datetime, runner: str) -> str:
    """Store one try's outcome for the claimed rows; returns the rows' new state."""
    current = session.execute(sa.select(n.id, n.attempts, n.channel_id).where(
        n.id.in_(ids), n.state == "pending")).all()
    state = "pending"
    for row in current:
        attempts = row.attempts + 1
        if result.outcome == "sent":
            state = "sent"
        elif result.outcome == "rejected" or attempts >= settings.alert_max_attempts:
            state = "gave_up"
        else:
            state = "pending"
        values: dict[str, Any] = {"state": state, "attempts": attempts, "claimed_until": None, "claimed_by": None,
                                  "last_status": result.status, "last_error": result.error}
        if state == "sent":
            values["sent_at"] = now
        elif state == "pending":
            values["next_attempt_at"] = now + backoff(attempts, result.retry_after)
        session.execute(alert_notifications.update().where(n.id == row.id).values(**values))
        session.execute(alert_attempts.insert().values(
            notification_id=row.id, channel_id=row.channel_id, at=now, outcome=result.outcome,
            status=result.status, error=result.error, runner=runner))
    if current:
        count_attempt(session, channel_kind, result.outcome)
    return state


def count_attempt(session: Session, channel_kind: str, outcome: str) -> None:
    """Add one to the delivery counter (an upsert: /metrics's counter never goes down)."""
    dialect = session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(alert_counters)
    session.execute(insert.values(channel_kind=channel_kind, outcome=outcome, count=1).on_conflict_do_update(
        index_elements=["channel_kind", "outcome"], set_={"count": alert_counters.c.count + 1}))


def deliver_channel(db: Database, settings: Settings, channel_id: int, clock: Callable[[], datetime],
                    runner: str, send: Callable[..., Delivery] | None = None) -> dict[str, int]:
    """Deliver what is due on one channel, one delivery after another; stop at the first failure."""
    counts = {"sent": 0, "failed": 0, "rejected": 0}
    with db.read() as session:
        channel = session.execute(sa.select(alert_channels).where(alert_channels.c.id == channel_id)
                                  ).mappings().first()
    if channel is None:
        return counts
    channel_module = module(channel["kind"])
    for _ in range(PER_PASS):
        now = clock()
        ids = db.write(lambda s, now=now: claim_next(s, settings, channel_id, now, runner))
        if not ids:
            break
        with db.read() as session:
            built = build(session, settings, ids, now)
        try:
            result = (send or channel_module.send)(channel["target"], built, settings)
        except Exception as exc:  # noqa: BLE001 - a channel's bug is that delivery's failure
            result = Delivery("failed", None, type(exc).__name__)
        db.write(lambda s, ids=ids, result=result: record(s, settings, ids, channel["kind"], result, clock(), runner))
        counts[result.outcome] += 1
        if result.outcome == "failed":
            log.warning("alert delivery to channel %s (%s, %s) failed: %s %s", channel["name"], channel["kind"],
                        channel_module.mask(channel["target"]), result.status or "", result.error or "")
            break
    return counts


def deliver_due(db: Database, settings: Settings, clock: Callable[[], datetime], runner: str) -> dict[str, int]:
    """Every due channel once, one after another (the loop runs channels in parallel instead)."""
    with db.read() as session:
        channel_ids = due_channels(session, clock())
    total = {"sent": 0, "failed": 0, "rejected": 0}
    for channel_id in channel_ids:
        for key, value in deliver_channel(db, settings, channel_id, clock, runner).items():
            total[key] += value
    return total


def send_test(settings: Settings, channel: Mapping[str, Any], now: datetime, url: str) -> Delivery:
    """Send a test notification to a channel now (the "send test" button); nothing is stored."""
    import uuid

    notification_id = f"test-{uuid.uuid4()}"
    document = {"notification_id": notification_id, "test": True, "incident_id": None, "rule": None,
                "agent_name": None, "job_type": None, "kind": "test", "state": "open",
                "at": now.isoformat(), "console_url": f"{url}/alerts", "run": None}
    body = messages.Message(notification_id, "Test notification from Local Telemetry",
                            f"This is a test of the alert channel {channel['name']!r}.\n{url}/alerts", document)
    try:
        return module(channel["kind"]).send(channel["target"], body, settings)
    except Exception as exc:  # noqa: BLE001 - answered to the operator
        return Delivery("failed", None, type(exc).__name__)
