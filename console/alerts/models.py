"""The shapes of alert channels, rules and mutes as clients send them (validated: bad input is a 422)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from console.alerts import schedule
from console.alerts.channels import module
from console.domain.validation import clean_text

Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(clean_text)]
Secret = Annotated[str, Field(min_length=1, max_length=4000), AfterValidator(clean_text)]
Kind = Literal["failure", "stale", "missing", "slow"]
ALL_AGENTS = "*"
MAX_INT32 = 2**31 - 1  # the columns are 32-bit integers on PostgreSQL


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    kind: Literal["webhook", "email", "apprise"]
    target: Secret = Field(description="a secret: masked in every answer")

    @model_validator(mode="after")
    def _target_fits_kind(self) -> ChannelIn:
        module(self.kind).check(self.target.strip())
        self.target = self.target.strip()
        return self


def _cron(value: Optional[str]) -> Optional[str]:
    if value is not None:
        schedule.parse_cron(value)
        return " ".join(value.split())
    return value


def _zone(value: Optional[str]) -> Optional[str]:
    if value is not None:  # null: the default, UTC (console/alerts/config.py)
        schedule.parse_zone(value)
    return value


class RuleFields(BaseModel):
    """Every field a rule has; RuleIn requires some, RulePatch none."""

    model_config = ConfigDict(extra="forbid")

    name: Optional[Name] = None
    agent_name: Optional[Name] = Field(None, description='an agent, or "*" for all agents (not for missing)')
    job_type: Optional[Name] = None
    on: Optional[Kind] = None
    channels: Optional[list[int]] = Field(None, max_length=50)
    notify_resolved: Optional[bool] = None
    repeat_minutes: Optional[int] = Field(None, ge=0, le=525_600, description="0 = never repeat")
    failures_in_a_row: Optional[int] = Field(None, ge=1, le=1000, description="failure: only after N in a row")
    success_rate_below: Optional[float] = Field(None, gt=0, le=1, description="failure: when the rate over "
                                                "window_minutes falls below this fraction")
    window_minutes: Optional[int] = Field(None, ge=1, le=525_600)
    stale_minutes: Optional[int] = Field(None, ge=1, le=525_600, description="stale: the rule's own threshold")
    schedule: Annotated[Optional[str], Field(None, max_length=200), AfterValidator(_cron)] = Field(
        None, description="missing: a 5-field cron expression, in `timezone`")
    period_seconds: Optional[int] = Field(None, ge=60, le=366 * 86_400, description="missing: instead of schedule")
    grace_seconds: Optional[int] = Field(None, ge=0, le=366 * 86_400)
    timezone: Annotated[Optional[str], Field(None, max_length=100), AfterValidator(_zone)] = None
    duration_ms_over: Optional[int] = Field(None, ge=1, le=MAX_INT32, description="slow: the bound")


class RuleIn(RuleFields):
    name: Name
    agent_name: Name
    on: Kind
    channels: list[int] = Field(max_length=50)
    notify_resolved: bool = True
    repeat_minutes: int = Field(0, ge=0, le=525_600)


class MuteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_name: Optional[Name] = None
    rule_id: Optional[int] = Field(None, ge=1, le=MAX_INT32)
    until: datetime = Field(description="ISO 8601 with a time zone")

    @model_validator(mode="after")
    def _one_target(self) -> MuteIn:
        if (self.agent_name is None) == (self.rule_id is None):
            raise ValueError("give either agent_name or rule_id")
        if self.until.tzinfo is None:
            raise ValueError("until must include a time zone, e.g. 2026-12-24T08:00:00Z")
        try:
            self.until = self.until.astimezone(UTC)
        except OverflowError:
            raise ValueError("until is out of range") from None
        return self


def check_rule(rule: dict) -> None:
    """The rule as it will be stored makes sense as a whole; ValueError says what does not."""
    kind = rule["kind"]
    if kind == "missing":
        if rule["agent_name"] == ALL_AGENTS:
            raise ValueError('a missing rule names one agent: "*" is not allowed')
        if (rule.get("schedule") is None) == (rule.get("period_seconds") is None):
            raise ValueError("a missing rule needs either schedule (cron) or period_seconds")
    elif rule.get("schedule") is not None or rule.get("period_seconds") is not None:
        raise ValueError("schedule and period_seconds belong to missing rules")
    if kind == "slow" and rule.get("duration_ms_over") is None:
        raise ValueError("a slow rule needs duration_ms_over")
    if kind != "slow" and rule.get("duration_ms_over") is not None:
        raise ValueError("duration_ms_over belongs to slow rules")
    if kind != "failure" and ((rule.get("failures_in_a_row") or 1) > 1 or rule.get("success_rate_below")):
        raise ValueError("failures_in_a_row and success_rate_below belong to failure rules")
    if (rule.get("success_rate_below") is None) != (rule.get("window_minutes") is None):
        raise ValueError("success_rate_below and window_minutes go together")
    if kind != "stale" and rule.get("stale_minutes") is not None:
        raise ValueError("stale_minutes belongs to stale rules")
