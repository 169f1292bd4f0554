"""Rule evaluation: open and resolve incidents from the stored runs, and queue their notifications.

Each pass looks at the runs as they are now, so a pass after a restart, or by a
new leader, finds what the last one would have: an incident opens once (its
`open_key` is unique while it is open), and a notification is created once per
incident transition and channel (a unique key). Time comes from the caller
(`now`, the injectable clock); the candidate scan for failed and slow runs reads
`updated_at`, which the writers set from the real clock.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from console.alerts import schedule
from console.alerts.config import is_muted
from console.alerts.models import ALL_AGENTS
from console.alerts.tables import alert_incidents, alert_notifications, alert_rule_channels, alert_rules, alert_state
from console.core.settings import Settings
from console.core.timeutil import utcnow
from console.domain.stale import list_stale
from console.store.alert_marker import FAILING
from console.store.models import agent_runs

log = logging.getLogger("console.alerts.evaluate")

runs = agent_runs.c
# Writers on other hosts commit a little after their clock read `updated_at`: look back this far.
SCAN_MARGIN = timedelta(minutes=2)


@dataclass
class Finding:
    """A subject whose rule fires now."""

    agent_name: str
    job_type: str | None
    subject: str
    event_id: str | None
    detail: str


def evaluate(session: Session, settings: Settings, now: datetime, runner: str = "") -> dict[str, int]:
    """One pass over every rule; returns counts (opened, resolved, repeats, notifications)."""
    state = session.execute(sa.select(alert_state).where(alert_state.c.id == 1)).mappings().first()
    scan_started = utcnow()
    scanned_from = state["evaluated_from"] - SCAN_MARGIN if state and state["evaluated_from"] else None
    counts = {"rules": 0, "opened": 0, "resolved": 0, "repeats": 0, "notifications": 0}
    channels: dict[int, list[int]] = {}
    for rule_id, channel_id in session.execute(sa.select(alert_rule_channels)):
        channels.setdefault(rule_id, []).append(channel_id)
    for rule in session.execute(sa.select(alert_rules).order_by(alert_rules.c.id)).mappings().all():
        counts["rules"] += 1
        since = max(rule["created_at"], scanned_from) if scanned_from else rule["created_at"]
        _evaluate_rule(session, settings, dict(rule), channels.get(rule["id"], []), now, since, counts)
    values = {"last_evaluated_at": now, "evaluated_by": runner, "evaluated_from": scan_started}
    if state is None:
        session.execute(alert_state.insert().values(id=1, changes=0, **values))
    else:
        session.execute(alert_state.update().where(alert_state.c.id == 1).values(**values))
    return counts


def _evaluate_rule(session: Session, settings: Settings, rule: dict[str, Any], channel_ids: list[int],
                   now: datetime, since: datetime, counts: dict[str, int]) -> None:
    open_incidents = {row["subject"]: dict(row) for row in session.execute(
        sa.select(alert_incidents).where(alert_incidents.c.rule_id == rule["id"],
                                         alert_incidents.c.state == "open")).mappings()}
    kind = rule["kind"]
    if kind == "failure":
        firing, resolved = _failure(session, rule, open_incidents, now, since)
    elif kind == "stale":
        firing, resolved = _stale(session, settings, rule, open_incidents, now)
    elif kind == "slow":
        firing, resolved = _slow(session, rule, open_incidents, now, since)
    else:
        firing, resolved = _missing(session, rule, open_incidents, now)
    for subject, event_id in resolved.items():
        incident = open_incidents.pop(subject)
        _resolve(session, rule, incident, channel_ids, now, event_id, counts)
    per_run = kind in ("stale", "slow")
    for finding in firing:
        if finding.subject in open_incidents:
            continue
        if per_run and _ever_opened(session, rule["id"], finding.subject):
            continue  # a run alerts once per rule
        _open(session, rule, finding, channel_ids, now, counts)
    if rule["repeat_minutes"] > 0:
        for incident in open_incidents.values():
            _repeat(session, rule, incident, channel_ids, now, counts)


# ---------------------------------------------------------------- what fires


def _scope(query, rule: Mapping[str, Any]):
    if rule["agent_name"] != ALL_AGENTS:
        query = query.where(runs.agent_name == rule["agent_name"])
    if rule["job_type"] is not None:
        query = query.where(runs.job_type == rule["job_type"])
    return query


def _group_subject(agent_name: str, job_type: str | None) -> str:
    return json.dumps([agent_name, job_type])


def _failure(session: Session, rule: dict[str, Any], open_incidents: dict[str, dict], now: datetime,
             since: datetime) -> tuple[list[Finding], dict[str, str | None]]:
    failing = sa.literal_column("'failure'"), sa.literal_column("'timeout'")
    changed = session.execute(_scope(
        sa.select(runs.agent_name, runs.job_type).distinct()
        .where(runs.status.in_(failing), runs.updated_at >= since), rule)).all()
    groups = {(a, j) for a, j in changed}
    groups |= {(i["agent_name"], i["job_type"]) for i in open_incidents.values()}
    firing: list[Finding] = []
    resolved: dict[str, str | None] = {}
    wanted = max(1, rule["failures_in_a_row"] or 1)
    for agent_name, job_type in sorted(groups):
        subject = _group_subject(agent_name, job_type)
        latest = _latest_ended(session, agent_name, job_type, wanted)
        if not latest:
            continue
        last = latest[0]
        if subject in open_incidents:
            if last["status"] == "success":
                resolved[subject] = last["event_id"]
            continue
        if last["status"] not in FAILING or last["updated_at"] < rule["created_at"]:
            continue
        if len(latest) < wanted or any(run["status"] not in FAILING for run in latest):
            continue
        detail = f"run ended {last['status']}"
        if wanted > 1:
            detail = f"{wanted} runs in a row failed"
        if rule["success_rate_below"] is not None:
            rate = _success_rate(session, agent_name, job_type, now - timedelta(minutes=rule["window_minutes"]))
            if rate is None or rate >= rule["success_rate_below"]:
                continue
            detail = f"success rate {rate:.0%} over {rule['window_minutes']} min, below {rule['success_rate_below']:.0%}"
        firing.append(Finding(agent_name, job_type, subject, last["event_id"], detail))
    return firing, resolved


# The latest runs are read newest created first (the index of agent and created_at) and then
# ordered by when they ended; this many more than needed covers runs that overlap.
OVERLAP = 50


def _latest_ended(session: Session, agent_name: str, job_type: str, limit: int) -> list[Mapping[str, Any]]:
    """The `limit` runs of the group that ended last, latest first."""
    rows = session.execute(
        sa.select(runs.id, runs.event_id, runs.status, runs.updated_at, runs.end_time, runs.start_time)
        .where(runs.agent_name == agent_name, runs.job_type == job_type, runs.status != "running")
        .order_by(runs.created_at.desc(), runs.id.desc()).limit(limit + OVERLAP)).mappings().all()
    ended = sorted(rows, key=lambda r: (r["end_time"] or r["updated_at"] or r["start_time"], r["id"]), reverse=True)
    return ended[:limit]


def _success_rate(session: Session, agent_name: str, job_type: str, start: datetime) -> float | None:
    total, good = session.execute(
        sa.select(sa.func.count(), sa.func.sum(sa.case((runs.status == "success", 1), else_=0)))
        .where(runs.agent_name == agent_name, runs.job_type == job_type, runs.status != "running",
               sa.func.coalesce(runs.end_time, runs.updated_at) >= start)).one()
    return (good or 0) / total if total else None


def _stale(session: Session, settings: Settings, rule: dict[str, Any], open_incidents: dict[str, dict],
           now: datetime) -> tuple[list[Finding], dict[str, str | None]]:
    resolved = _ended_runs(session, open_incidents)
    minutes = rule["stale_minutes"] or settings.stale_threshold_minutes
    if not minutes:
        return [], resolved
    firing = []
    for run in list_stale(session, minutes, now=now, limit=10_000):
        if rule["agent_name"] != ALL_AGENTS and run["agent_name"] != rule["agent_name"]:
            continue
        if rule["job_type"] is not None and run["job_type"] != rule["job_type"]:
            continue
        firing.append(Finding(run["agent_name"], run["job_type"], run["event_id"], run["event_id"],
                              f"silent for more than {minutes} min"))
    return firing, resolved


def _ended_runs(session: Session, open_incidents: dict[str, dict]) -> dict[str, str | None]:
    """Per-run incidents whose run has ended (or is gone): subject → its event_id."""
    if not open_incidents:
        return {}
    running = set(session.execute(sa.select(runs.event_id).where(
        runs.event_id.in_(list(open_incidents)), runs.status == "running")).scalars())
    return {subject: subject for subject in open_incidents if subject not in running}


def _slow(session: Session, rule: dict[str, Any], open_incidents: dict[str, dict], now: datetime,
          since: datetime) -> tuple[list[Finding], dict[str, str | None]]:
    resolved = _ended_runs(session, open_incidents)
    bound = rule["duration_ms_over"]
    still = _scope(sa.select(runs.event_id, runs.agent_name, runs.job_type).where(
        runs.status == sa.literal_column("'running'"), runs.start_time < now - timedelta(milliseconds=bound)), rule)
    ended = _scope(sa.select(runs.event_id, runs.agent_name, runs.job_type).where(
        runs.status != "running", runs.duration_ms > bound, runs.updated_at >= since), rule)
    firing = []
    for query, detail in ((still, f"still running after {bound} ms"), (ended, f"took more than {bound} ms")):
        for event_id, agent_name, job_type in session.execute(query.limit(10_000)):
            firing.append(Finding(agent_name, job_type, event_id, event_id, detail))
    return firing, resolved


def _missing(session: Session, rule: dict[str, Any], open_incidents: dict[str, dict],
             now: datetime) -> tuple[list[Finding], dict[str, str | None]]:
    subject = _group_subject(rule["agent_name"], rule["job_type"])
    recent = session.execute(_scope(
        sa.select(runs.event_id, runs.start_time).order_by(runs.created_at.desc(), runs.id.desc()).limit(OVERLAP),
        rule)).all()
    last = max(recent, key=lambda r: r.start_time) if recent else None
    grace = timedelta(seconds=rule["grace_seconds"] or 0)
    if rule["schedule"]:
        due, previous = schedule.due_before(rule["schedule"], rule["timezone"], now - grace)
        late = due is not None and due > rule["created_at"]
        window_start = previous or rule["created_at"]
        started = last is not None and last.start_time > window_start
    else:
        base = last.start_time if last is not None else rule["created_at"]
        due = base + timedelta(seconds=rule["period_seconds"])
        late = now - grace > due
        started = False  # the last start is the base: a later start moved the due time
    if late and not started:
        if subject in open_incidents:
            return [], {}
        local = due.astimezone(schedule.parse_zone(rule["timezone"]))
        detail = f"no run started by {local.isoformat(timespec='minutes')} ({rule['timezone']})"
        if grace:
            detail += f" plus {int(grace.total_seconds())} s grace"
        return [Finding(rule["agent_name"], rule["job_type"], subject, last.event_id if last else None, detail)], {}
    if subject in open_incidents:
        return [], {subject: last.event_id if last else None}
    return [], {}


# ---------------------------------------------------------------- transitions


def _ever_opened(session: Session, rule_id: int, subject: str) -> bool:
    return session.execute(sa.select(alert_incidents.c.id).where(
        alert_incidents.c.rule_id == rule_id, alert_incidents.c.subject == subject).limit(1)).first() is not None


def _open(session: Session, rule: dict[str, Any], finding: Finding, channel_ids: list[int], now: datetime,
          counts: dict[str, int]) -> None:
    try:
        with session.begin_nested():
            incident_id = session.execute(alert_incidents.insert().values(
                rule_id=rule["id"], agent_name=finding.agent_name, job_type=finding.job_type, kind=rule["kind"],
                subject=finding.subject, open_key=f"{rule['id']}:{finding.subject}", state="open",
                event_id=finding.event_id, detail=finding.detail[:1000], opened_at=now, last_notified_at=now,
            )).inserted_primary_key[0]
    except IntegrityError:  # another evaluator opened it first
        return
    counts["opened"] += 1
    log.info("alert opened: rule %s, %s (%s)", rule["name"], finding.agent_name, finding.detail)
    if not is_muted(session, rule["id"], finding.agent_name, now):
        counts["notifications"] += _queue(session, incident_id, channel_ids, "open", 0, now)


def _resolve(session: Session, rule: dict[str, Any], incident: dict[str, Any], channel_ids: list[int],
             now: datetime, event_id: str | None, counts: dict[str, int]) -> None:
    done = session.execute(alert_incidents.update().where(
        alert_incidents.c.id == incident["id"], alert_incidents.c.state == "open").values(
        state="resolved", open_key=None, resolved_at=now, event_id=event_id or incident["event_id"]))
    if not done.rowcount:
        return
    counts["resolved"] += 1
    log.info("alert resolved: rule %s, %s", rule["name"], incident["agent_name"])
    notified = session.execute(sa.select(alert_notifications.c.id).where(
        alert_notifications.c.incident_id == incident["id"]).limit(1)).first() is not None
    # A resolution is news only to those who heard of the incident.
    if rule["notify_resolved"] and notified and not is_muted(session, rule["id"], incident["agent_name"], now):
        counts["notifications"] += _queue(session, incident["id"], channel_ids, "resolved", 0, now)


def _repeat(session: Session, rule: dict[str, Any], incident: dict[str, Any], channel_ids: list[int],
            now: datetime, counts: dict[str, int]) -> None:
    last = incident["last_notified_at"] or incident["opened_at"]
    if now < last + timedelta(minutes=rule["repeat_minutes"]):
        return
    if is_muted(session, rule["id"], incident["agent_name"], now):
        return
    seq = incident["repeats"] + 1
    done = session.execute(alert_incidents.update().where(
        alert_incidents.c.id == incident["id"], alert_incidents.c.repeats == incident["repeats"]).values(
        repeats=seq, last_notified_at=now))
    if done.rowcount:
        counts["repeats"] += 1
        counts["notifications"] += _queue(session, incident["id"], channel_ids, "repeat", seq, now)


def _queue(session: Session, incident_id: int, channel_ids: list[int], transition: str, seq: int,
           now: datetime) -> int:
    """One pending notification per channel for this transition (a second try creates none)."""
    made = 0
    for channel_id in channel_ids:
        try:
            with session.begin_nested():
                session.execute(alert_notifications.insert().values(
                    notification_id=str(uuid.uuid4()), incident_id=incident_id, channel_id=channel_id,
                    transition=transition, seq=seq, state="pending", next_attempt_at=now, created_at=now))
            made += 1
        except IntegrityError:
            continue
    return made

