"""Reading incidents: the list with notification counts, an agent's open ones, counts for pages and /metrics."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from console.alerts.tables import (
    alert_attempts,
    alert_channels,
    alert_counters,
    alert_incidents,
    alert_notifications,
    alert_rules,
    alert_state,
)

i = alert_incidents.c
n = alert_notifications.c
# A channel "keeps failing" when its last this-many attempts all failed.
FAILING_ATTEMPTS = 3


def list_incidents(session: Session, state: str | None = None, agent_name: str | None = None,
                   limit: int = 200, with_notifications: bool = False) -> list[dict[str, Any]]:
    """Incidents, newest first; `notifications` is how many were sent."""
    query = sa.select(alert_incidents, alert_rules.c.name.label("rule")).join(
        alert_rules, alert_rules.c.id == i.rule_id).order_by(i.opened_at.desc(), i.id.desc()).limit(limit)
    if state:
        query = query.where(i.state == state)
    if agent_name:
        query = query.where(i.agent_name == agent_name)
    rows = [dict(row) for row in session.execute(query).mappings()]
    ids = [row["id"] for row in rows]
    sent: dict[int, int] = {}
    details: dict[int, list[dict[str, Any]]] = {}
    if ids:
        sent = dict(session.execute(sa.select(n.incident_id, sa.func.count()).where(
            n.incident_id.in_(ids), n.state == "sent").group_by(n.incident_id)).all())
        if with_notifications:
            for row in session.execute(
                    sa.select(alert_notifications, alert_channels.c.name.label("channel"),
                              alert_channels.c.kind.label("channel_kind"))
                    .join(alert_channels, alert_channels.c.id == n.channel_id)
                    .where(n.incident_id.in_(ids)).order_by(n.id)).mappings():
                details.setdefault(row["incident_id"], []).append(dict(row))
    out = []
    for row in rows:
        item = {"id": row["id"], "rule_id": row["rule_id"], "rule": row["rule"], "agent_name": row["agent_name"],
                "job_type": row["job_type"], "kind": row["kind"], "state": row["state"],
                "opened_at": row["opened_at"], "resolved_at": row["resolved_at"], "event_id": row["event_id"],
                "detail": row["detail"], "notifications": sent.get(row["id"], 0)}
        if with_notifications:
            item["deliveries"] = details.get(row["id"], [])
        out.append(item)
    return out


def open_counts(session: Session) -> list[tuple[str, str, int]]:
    """(agent, kind, open incidents), for /metrics."""
    return [tuple(row) for row in session.execute(
        sa.select(i.agent_name, i.kind, sa.func.count()).where(i.state == "open").group_by(i.agent_name, i.kind))]


def open_total(session: Session) -> int:
    return session.execute(sa.select(sa.func.count()).select_from(alert_incidents).where(i.state == "open")).scalar()


def counters(session: Session) -> list[tuple[str, str, int]]:
    return [tuple(row) for row in session.execute(sa.select(
        alert_counters.c.channel_kind, alert_counters.c.outcome, alert_counters.c.count))]


def last_evaluation(session: Session) -> dict[str, Any] | None:
    row = session.execute(sa.select(alert_state).where(alert_state.c.id == 1)).mappings().first()
    return dict(row) if row else None


def failing_channels(session: Session) -> list[dict[str, Any]]:
    """Channels whose last FAILING_ATTEMPTS delivery attempts all failed."""
    out = []
    for channel in session.execute(sa.select(alert_channels.c.id, alert_channels.c.name)).mappings():
        outcomes = session.execute(sa.select(alert_attempts.c.outcome, alert_attempts.c.error).where(
            alert_attempts.c.channel_id == channel["id"]).order_by(alert_attempts.c.id.desc())
            .limit(FAILING_ATTEMPTS)).all()
        if len(outcomes) == FAILING_ATTEMPTS and all(o.outcome != "sent" for o in outcomes):
            out.append({"id": channel["id"], "name": channel["name"], "error": outcomes[0].error})
    return out
