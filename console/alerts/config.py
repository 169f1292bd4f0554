"""Channels, rules and mutes: create, list, change, delete (plain functions over a Session)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from console.alerts.channels import module
from console.alerts.models import ChannelIn, MuteIn, RuleFields, RuleIn, check_rule
from console.alerts.tables import alert_channels, alert_mutes, alert_rule_channels, alert_rules
from console.domain.errors import DomainError, NotFound


class AlertInvalid(DomainError):
    """Well-formed but unusable (an unknown channel id, a rule that contradicts itself)."""

    status = 422


# ---------------------------------------------------------------- channels


def channel_answer(row: Mapping[str, Any]) -> dict[str, Any]:
    """A channel as answers, pages and logs show it: its target masked."""
    return {"id": row["id"], "name": row["name"], "kind": row["kind"],
            "target": module(row["kind"]).mask(row["target"]), "created_at": row["created_at"]}


def create_channel(session: Session, body: ChannelIn, now: datetime) -> dict[str, Any]:
    try:
        with session.begin_nested():
            new_id = session.execute(alert_channels.insert().values(
                name=body.name, kind=body.kind, target=body.target, created_at=now)).inserted_primary_key[0]
    except IntegrityError:
        raise DomainError(f"a channel named {body.name!r} exists already") from None
    return channel_answer(get_channel(session, new_id))


def get_channel(session: Session, channel_id: int) -> Mapping[str, Any]:
    row = session.execute(sa.select(alert_channels).where(alert_channels.c.id == channel_id)).mappings().first()
    if row is None:
        raise NotFound(f"channel {channel_id} not found")
    return row


def list_channels(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(sa.select(alert_channels).order_by(alert_channels.c.name)).mappings()
    return [channel_answer(row) for row in rows]


def delete_channel(session: Session, channel_id: int) -> None:
    get_channel(session, channel_id)
    session.execute(alert_rule_channels.delete().where(alert_rule_channels.c.channel_id == channel_id))
    session.execute(alert_channels.delete().where(alert_channels.c.id == channel_id))


# ---------------------------------------------------------------- rules

RULE_COLUMNS = ("name", "agent_name", "job_type", "kind", "notify_resolved", "repeat_minutes", "failures_in_a_row",
                "success_rate_below", "window_minutes", "stale_minutes", "schedule", "period_seconds",
                "grace_seconds", "timezone", "duration_ms_over")


def rule_answer(row: Mapping[str, Any], channel_ids: list[int]) -> dict[str, Any]:
    out = {"id": row["id"], **{name: row[name] for name in RULE_COLUMNS if name != "kind"}}
    out["on"] = row["kind"]
    out["notify_resolved"] = bool(row["notify_resolved"])
    out["channels"] = channel_ids
    out["created_at"], out["updated_at"] = row["created_at"], row["updated_at"]
    return out


# Columns that always hold a value: null (sent, or left out of a new rule) means this default.
DEFAULTS = {"notify_resolved": 1, "repeat_minutes": 0, "failures_in_a_row": 1, "grace_seconds": 0, "timezone": "UTC"}


def _values(fields: RuleFields) -> dict[str, Any]:
    given = fields.model_dump(exclude_unset=True)
    given.pop("channels", None)
    for name, default in DEFAULTS.items():
        if name in given and given[name] is None:
            given[name] = default
    if "on" in given:
        given["kind"] = given.pop("on")
    if "notify_resolved" in given:
        given["notify_resolved"] = int(bool(given["notify_resolved"]))
    return given


def _check_channels(session: Session, channel_ids: list[int]) -> list[int]:
    wanted = list(dict.fromkeys(channel_ids))
    if any(not 0 < cid <= 2**31 - 1 for cid in wanted):
        raise AlertInvalid([{"loc": ["body", "channels"], "msg": "channel ids are positive integers",
                             "type": "value_error"}])
    known = set(session.execute(sa.select(alert_channels.c.id).where(alert_channels.c.id.in_(wanted))).scalars())
    unknown = [cid for cid in wanted if cid not in known]
    if unknown:
        raise AlertInvalid([{"loc": ["body", "channels"], "msg": f"unknown channel id(s): {unknown}",
                             "type": "value_error"}])
    return wanted


def _check_whole(rule: dict[str, Any]) -> None:
    try:
        check_rule(rule)
    except ValueError as exc:
        raise AlertInvalid([{"loc": ["body"], "msg": str(exc), "type": "value_error"}]) from None


def create_rule(session: Session, body: RuleIn, now: datetime) -> dict[str, Any]:
    values = {**DEFAULTS, **_values(body)}
    _check_whole(values)
    channel_ids = _check_channels(session, body.channels)
    rule_id = session.execute(alert_rules.insert().values(**values, created_at=now, updated_at=now)
                              ).inserted_primary_key[0]
    _set_channels(session, rule_id, channel_ids)
    return get_rule(session, rule_id)


def update_rule(session: Session, rule_id: int, change: RuleFields, now: datetime) -> dict[str, Any]:
    old = _rule_row(session, rule_id)
    values = _values(change)
    for required in ("name", "agent_name", "kind"):
        if required in values and values[required] is None:
            raise AlertInvalid([{"loc": ["body", required], "msg": "may not be null", "type": "value_error"}])
    _check_whole({**old, **values})
    if change.channels is not None:
        _set_channels(session, rule_id, _check_channels(session, change.channels))
    if values:
        session.execute(alert_rules.update().where(alert_rules.c.id == rule_id).values(**values, updated_at=now))
    return get_rule(session, rule_id)


def _set_channels(session: Session, rule_id: int, channel_ids: list[int]) -> None:
    session.execute(alert_rule_channels.delete().where(alert_rule_channels.c.rule_id == rule_id))
    if channel_ids:
        session.execute(alert_rule_channels.insert(), [{"rule_id": rule_id, "channel_id": c} for c in channel_ids])


def _rule_row(session: Session, rule_id: int) -> dict[str, Any]:
    row = session.execute(sa.select(alert_rules).where(alert_rules.c.id == rule_id)).mappings().first()
    if row is None:
        raise NotFound(f"rule {rule_id} not found")
    return dict(row)


def rule_channels(session: Session) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for rule_id, channel_id in session.execute(sa.select(alert_rule_channels).order_by(
            alert_rule_channels.c.rule_id, alert_rule_channels.c.channel_id)):
        out.setdefault(rule_id, []).append(channel_id)
    return out


def get_rule(session: Session, rule_id: int) -> dict[str, Any]:
    return rule_answer(_rule_row(session, rule_id), rule_channels(session).get(rule_id, []))


def list_rules(session: Session) -> list[dict[str, Any]]:
    channels = rule_channels(session)
    rows = session.execute(sa.select(alert_rules).order_by(alert_rules.c.name, alert_rules.c.id)).mappings()
    return [rule_answer(row, channels.get(row["id"], [])) for row in rows]


def delete_rule(session: Session, rule_id: int) -> None:
    _rule_row(session, rule_id)
    from console.alerts.tables import alert_incidents

    # Incidents go with their rule (and their notifications with them).
    session.execute(alert_incidents.delete().where(alert_incidents.c.rule_id == rule_id))
    session.execute(alert_mutes.delete().where(alert_mutes.c.rule_id == rule_id))
    session.execute(alert_rule_channels.delete().where(alert_rule_channels.c.rule_id == rule_id))
    session.execute(alert_rules.delete().where(alert_rules.c.id == rule_id))


# ---------------------------------------------------------------- mutes


def create_mute(session: Session, body: MuteIn, now: datetime) -> dict[str, Any]:
    if body.rule_id is not None:
        if session.execute(sa.select(alert_rules.c.id).where(alert_rules.c.id == body.rule_id)).first() is None:
            raise AlertInvalid([{"loc": ["body", "rule_id"], "msg": f"unknown rule id {body.rule_id}",
                                 "type": "value_error"}])
    mute_id = session.execute(alert_mutes.insert().values(
        agent_name=body.agent_name, rule_id=body.rule_id, until=body.until, created_at=now)).inserted_primary_key[0]
    return _mute(session, mute_id)


def _mute(session: Session, mute_id: int) -> dict[str, Any]:
    row = session.execute(sa.select(alert_mutes).where(alert_mutes.c.id == mute_id)).mappings().first()
    if row is None:
        raise NotFound(f"mute {mute_id} not found")
    return dict(row)


def list_mutes(session: Session, now: datetime | None = None) -> list[dict[str, Any]]:
    """The mutes, newest first; with `now`, only those still in force."""
    query = sa.select(alert_mutes).order_by(alert_mutes.c.until.desc(), alert_mutes.c.id.desc())
    if now is not None:
        query = query.where(alert_mutes.c.until > now)
    return [dict(row) for row in session.execute(query).mappings()]


def delete_mute(session: Session, mute_id: int) -> None:
    _mute(session, mute_id)
    session.execute(alert_mutes.delete().where(alert_mutes.c.id == mute_id))


def is_muted(session: Session, rule_id: int, agent_name: str, now: datetime) -> bool:
    found = session.execute(sa.select(alert_mutes.c.id).where(
        alert_mutes.c.until > now,
        sa.or_(alert_mutes.c.rule_id == rule_id, alert_mutes.c.agent_name == agent_name)).limit(1)).first()
    return found is not None
