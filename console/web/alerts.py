"""The Alerts page: channels (with "send test"), rules, incidents with their deliveries, mutes, and banners.

Every form posts with htmx and gets the page's configuration section back, with
the form's errors (200: htmx swaps only successful answers); without htmx, a
redirect to the page, or the whole page with the errors as a 422.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import current_app, flash, redirect, request, url_for
from pydantic import BaseModel, ValidationError

from console.alerts import config, incidents
from console.alerts.deliver import console_url, send_test
from console.alerts.models import ChannelIn, MuteIn, RuleFields, RuleIn
from console.core.timeutil import utcnow
from console.domain.errors import DomainError
from console.domain.validation import error_details
from console.web import web_bp
from console.web.render import page, render, wants_partial

RULE_NUMBERS = ("repeat_minutes", "failures_in_a_row", "window_minutes", "stale_minutes", "period_seconds",
                "grace_seconds", "duration_ms_over")
RULE_TEXTS = ("name", "agent_name", "job_type", "on", "schedule", "timezone")
# The banner shows when no leader evaluated the rules for this many evaluation intervals.
SILENT_INTERVALS = 4


def _db():
    return current_app.extensions["telemetry_db"]


def _settings():
    return current_app.config["SETTINGS"]


def open_incident_count() -> int:
    """For the navigation; 0 when the database cannot say (the page itself reports that)."""
    try:
        with _db().read() as session:
            return incidents.open_total(session)
    except Exception:  # noqa: BLE001 - a navigation badge never breaks a page
        return 0


def agent_incidents(session, agent_name: str) -> list[dict[str, Any]]:
    """An agent's open incidents, for a run's detail."""
    return incidents.list_incidents(session, "open", agent_name, limit=20)


def open_incidents_by_agent(session) -> dict[str, list[dict[str, Any]]]:
    """Every open incident by agent, for the agents page."""
    out: dict[str, list[dict[str, Any]]] = {}
    for incident in incidents.list_incidents(session, "open", limit=1000):
        out.setdefault(incident["agent_name"], []).append(incident)
    return out


def _context(session, errors: dict[str, Any] | None = None, editing: dict | None = None,
             tested: dict | None = None) -> dict[str, Any]:
    now = utcnow()
    settings = _settings()
    state = incidents.last_evaluation(session)
    last = state["last_evaluated_at"] if state else None
    silent = last is None or now - last > timedelta(seconds=settings.alert_evaluate_seconds * SILENT_INTERVALS)
    rules = config.list_rules(session)
    return {
        "channels": config.list_channels(session),
        "rules": rules,
        "open_incidents": incidents.list_incidents(session, "open", with_notifications=True),
        "resolved_incidents": incidents.list_incidents(session, "resolved", limit=50, with_notifications=True),
        "mutes": config.list_mutes(session, now),
        "leader_silent": bool(rules) and silent,
        "last_evaluated_at": last,
        "scheduler_enabled": settings.scheduler_enabled,
        "failing_channels": incidents.failing_channels(session),
        "errors": errors or {},
        "editing": editing,
        "tested": tested,
        "kinds": ("failure", "stale", "missing", "slow"),
    }


def _answer(status: int = 200, **kwargs: Any):
    with _db().read() as session:
        context = _context(session, **kwargs)
    if wants_partial():
        return render("alerts.html", "_alerts_config.html", 200, **context)
    if status == 200 and kwargs.get("tested") is None:
        return redirect(url_for("web.alerts"), 303)
    return page("alerts.html", status, **context)


def _form_rule() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in RULE_TEXTS:
        raw = (request.form.get(name) or "").strip()
        if raw:
            values[name] = raw
    for name in RULE_NUMBERS:
        raw = (request.form.get(name) or "").strip()
        if raw:
            values[name] = raw  # pydantic says "a valid integer" for text
    rate = (request.form.get("success_rate_below_percent") or "").strip()
    if rate:
        try:
            values["success_rate_below"] = float(rate) / 100
        except ValueError:
            values["success_rate_below"] = rate
    values["channels"] = request.form.getlist("channels")
    values["notify_resolved"] = request.form.get("notify_resolved") == "on"
    return values


def _validated(model: type[BaseModel], values: dict[str, Any], form: str):
    try:
        return model.model_validate(values), None
    except ValidationError as exc:
        return None, {form: [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'form'}: {e['msg']}"
                             for e in error_details(exc)]}


def _domain_error(form: str, exc: DomainError) -> dict[str, Any]:
    detail = exc.detail
    if isinstance(detail, list):
        return {form: [item.get("msg", str(item)) for item in detail]}
    return {form: [str(detail)]}


def _create(model: type[BaseModel], values: dict[str, Any], form: str, create, done: str):
    """Validate a form, store it with `create(session, body, now)`, and answer the page."""
    body, errors = _validated(model, values, form)
    if body is None:
        return _answer(422, errors=errors)
    try:
        _db().write(lambda s: create(s, body, utcnow()))
    except DomainError as exc:
        return _answer(422, errors=_domain_error(form, exc))
    flash(done(body), "ok")
    return _answer()


def _remove(delete, row_id: int, done: str):
    """Delete a row with `delete(session, row_id)` and answer the page."""
    _db().write(lambda s: delete(s, row_id))
    flash(done, "ok")
    return _answer()


@web_bp.get("/alerts", endpoint="alerts")
def alerts_page():
    with _db().read() as session:
        context = _context(session)
    return page("alerts.html", **context)


@web_bp.post("/alerts/channels")
def alerts_add_channel():
    values = {k: request.form.get(k, "") for k in ("name", "kind", "target")}
    return _create(ChannelIn, values, "channel", config.create_channel, lambda body: f"Channel {body.name!r} added.")


@web_bp.post("/alerts/channels/<int:channel_id>/test")
def alerts_test_channel(channel_id: int):
    with _db().read() as session:
        channel = dict(config.get_channel(session, channel_id))
    result = send_test(_settings(), channel, utcnow(), console_url(_settings()))
    return _answer(
                   tested={"id": channel_id, "outcome": result.outcome, "status": result.status,
                           "error": result.error})


@web_bp.post("/alerts/channels/<int:channel_id>/delete")
def alerts_delete_channel(channel_id: int):
    return _remove(config.delete_channel, channel_id, "Channel removed.")


@web_bp.post("/alerts/rules")
def alerts_add_rule():
    return _create(RuleIn, _form_rule(), "rule", config.create_rule, lambda body: f"Rule {body.name!r} added.")


@web_bp.get("/alerts/rules/<int:rule_id>/edit")
def alerts_edit_rule(rule_id: int):
    with _db().read() as session:
        rule = config.get_rule(session, rule_id)
        context = _context(session, editing=rule)
    return render("alerts.html", "_alerts_config.html", 200, **context)


@web_bp.post("/alerts/rules/<int:rule_id>")
def alerts_update_rule(rule_id: int):
    values = _form_rule()
    # A form cannot leave a field out: an emptied field clears it.
    for name in ("job_type", "schedule", "stale_minutes", "period_seconds", "duration_ms_over", "window_minutes"):
        values.setdefault(name, None)
    values.setdefault("success_rate_below", None)
    body, errors = _validated(RuleFields, values, "rule")
    if body is None:
        with _db().read() as session:
            rule = config.get_rule(session, rule_id)
        return _answer(422, errors=errors, editing=rule)
    try:
        _db().write(lambda s: config.update_rule(s, rule_id, body, utcnow()))
    except DomainError as exc:
        if exc.status == 404:
            raise
        with _db().read() as session:
            rule = config.get_rule(session, rule_id)
        return _answer(422, errors=_domain_error("rule", exc), editing=rule)
    flash("Rule saved.", "ok")
    return _answer()


@web_bp.post("/alerts/rules/<int:rule_id>/delete")
def alerts_delete_rule(rule_id: int):
    return _remove(config.delete_rule, rule_id, "Rule removed.")


@web_bp.post("/alerts/mutes")
def alerts_add_mute():
    values: dict[str, Any] = {"until": (request.form.get("until") or "").strip()}
    hours = (request.form.get("hours") or "").strip()
    if hours and not values["until"]:
        try:
            values["until"] = (utcnow() + timedelta(hours=float(hours))).isoformat()
        except (ValueError, OverflowError):
            values["until"] = hours
    rule = (request.form.get("rule") or "").strip().removeprefix("rule:")
    agent_name = (request.form.get("agent_name") or "").strip()
    if rule:
        values["rule_id"] = rule
    if agent_name:
        values["agent_name"] = agent_name
    return _create(MuteIn, values, "mute", config.create_mute, lambda body: "Muted.")


@web_bp.post("/alerts/mutes/<int:mute_id>/delete")
def alerts_delete_mute(mute_id: int):
    return _remove(config.delete_mute, mute_id, "Unmuted.")
