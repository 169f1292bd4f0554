"""Alert routes under /api/v1/alerts/: channels, rules, incidents, mutes (docs/alerts.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Optional

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field

from console.alerts import config, incidents
from console.alerts.deliver import console_url, send_test
from console.alerts.models import ChannelIn, MuteIn, Name, RuleFields, RuleIn
from console.api import api_bp
from console.api.spec import route
from console.core.timeutil import format_utc, utcnow
from console.domain.errors import NotFound
from console.http.context import get_db


class Channel(BaseModel):
    id: int
    name: str
    kind: str
    target: str = Field(description="masked")
    created_at: str


class ChannelTest(BaseModel):
    outcome: str = Field(description="sent | failed | rejected")
    status: Optional[int]
    error: Optional[str]


class Rule(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    name: str
    agent_name: str
    on: str
    channels: list[int]


class IncidentQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    state: Optional[Literal["open", "resolved"]] = None
    agent_name: Optional[Name] = None
    limit: int = Field(200, ge=1, le=1000)


class Incident(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    rule_id: int
    agent_name: str
    job_type: Optional[str]
    kind: str
    state: str
    opened_at: str
    resolved_at: Optional[str]
    notifications: int = Field(description="how many notifications were sent")


class Mute(BaseModel):
    id: int
    agent_name: Optional[str]
    rule_id: Optional[int]
    until: str
    created_at: str


def _plain(value: Any) -> Any:
    """Times in the one UTC form every answer uses."""
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _id(text: str, what: str) -> int:
    if not text.isdigit() or int(text) > 2**31 - 1:
        raise NotFound(f"{what} {text!r} not found")
    return int(text)


def _db():
    return get_db(current_app)


# Every route here needs an operator token when auth is on, reads included: they show
# where notifications go. (`auth="write"` asks for a token; the default scope is operator.)
TAGS = ["alerts"]


@route(api_bp, "/alerts/channels", "POST", summary="Add an alert channel (webhook, email, apprise)", tags=TAGS,
       body=ChannelIn, responses={201: Channel, 422: None}, auth="write")
def create_channel(body: ChannelIn):
    return _plain(_db().write(lambda s: config.create_channel(s, body, utcnow()))), 201


@route(api_bp, "/alerts/channels", "GET", summary="The alert channels (targets masked)", tags=TAGS,
       responses={200: list[Channel]}, auth="write")
def list_channels():
    with _db().read() as session:
        return _plain(config.list_channels(session))


@route(api_bp, "/alerts/channels/<channel_id>", "DELETE", summary="Remove an alert channel", tags=TAGS,
       responses={204: None, 404: None}, auth="write")
def delete_channel(channel_id: str):
    _db().write(lambda s: config.delete_channel(s, _id(channel_id, "channel")))
    return "", 204


@route(api_bp, "/alerts/channels/<channel_id>/test", "POST", summary="Send a test notification now", tags=TAGS,
       responses={200: ChannelTest, 404: None}, auth="write")
def test_channel(channel_id: str):
    with _db().read() as session:
        channel = dict(config.get_channel(session, _id(channel_id, "channel")))
    settings = current_app.config["SETTINGS"]
    result = send_test(settings, channel, utcnow(), console_url(settings))
    return {"outcome": result.outcome, "status": result.status, "error": result.error}


@route(api_bp, "/alerts/rules", "POST", summary="Add an alert rule", tags=TAGS, body=RuleIn,
       responses={201: Rule, 422: None}, auth="write")
def create_rule(body: RuleIn):
    return _plain(_db().write(lambda s: config.create_rule(s, body, utcnow()))), 201


@route(api_bp, "/alerts/rules", "GET", summary="The alert rules", tags=TAGS, responses={200: list[Rule]}, auth="write")
def list_rules():
    with _db().read() as session:
        return _plain(config.list_rules(session))


@route(api_bp, "/alerts/rules/<rule_id>", "PATCH", summary="Change an alert rule", tags=TAGS, body=RuleFields,
       responses={200: Rule, 404: None, 422: None}, auth="write")
def update_rule(rule_id: str, body: RuleFields):
    return _plain(_db().write(lambda s: config.update_rule(s, _id(rule_id, "rule"), body, utcnow())))


@route(api_bp, "/alerts/rules/<rule_id>", "DELETE", summary="Remove an alert rule and its incidents", tags=TAGS,
       responses={204: None, 404: None}, auth="write")
def delete_rule(rule_id: str):
    _db().write(lambda s: config.delete_rule(s, _id(rule_id, "rule")))
    return "", 204


@route(api_bp, "/alerts/incidents", "GET", summary="Incidents, newest first, with the notifications sent",
       tags=TAGS, query=IncidentQuery, responses={200: list[Incident]}, auth="write")
def list_incidents(query: IncidentQuery):
    with _db().read() as session:
        return _plain(incidents.list_incidents(session, query.state, query.agent_name, query.limit))


@route(api_bp, "/alerts/mute", "POST", summary="Mute a rule or an agent until a time", tags=TAGS, body=MuteIn,
       responses={201: Mute, 422: None}, auth="write")
def create_mute(body: MuteIn):
    return _plain(_db().write(lambda s: config.create_mute(s, body, utcnow()))), 201


@route(api_bp, "/alerts/mute", "GET", summary="The mutes still in force", tags=TAGS, responses={200: list[Mute]}, auth="write")
def list_mutes():
    with _db().read() as session:
        return _plain(config.list_mutes(session, utcnow()))


@route(api_bp, "/alerts/mute/<mute_id>", "DELETE", summary="Unmute", tags=TAGS, responses={204: None, 404: None},
       auth="write")
def delete_mute(mute_id: str):
    _db().write(lambda s: config.delete_mute(s, _id(mute_id, "mute")))
    return "", 204
