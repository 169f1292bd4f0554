"""Stale runs: the triage list, a page at a time, and the "mark failed" action (with a confirmation step)."""

from __future__ import annotations

from flask import current_app, flash, redirect, request, url_for

from console.core.timeutil import utcnow
from console.domain import stale
from console.domain.records import run_to_dict
from console.web import auth as web_auth
from console.web import web_bp
from console.web.paging import page_number, pager, past_the_end
from console.web.render import page, render

PER_PAGE = 100
COUNTED = 10_000  # past this many stale runs the page says "or more" rather than count them all
MAX_MARKED = 1000
MAX_THRESHOLD_MINUTES = 60 * 24 * 365


def _db():
    return current_app.extensions["telemetry_db"]


def _threshold() -> tuple[int, str | None]:
    """The threshold in minutes from the URL or form (default from settings), and an error."""
    default = current_app.config["SETTINGS"].stale_threshold_minutes
    raw = (request.values.get("older_than_minutes") or "").strip()
    if not raw:
        return default, None
    try:
        value = int(raw)
    except ValueError:
        return default, f"The threshold must be a whole number of minutes, not {raw[:50]!r}."
    if not 0 <= value <= MAX_THRESHOLD_MINUTES:
        return default, f"The threshold must be between 0 and {MAX_THRESHOLD_MINUTES} minutes."
    return value, None


def _stale_rows(session, minutes: int, *, now=None, **which) -> list[dict]:
    now = now or utcnow()
    hosts = current_app.config["SETTINGS"].git_hosts
    out = []
    for row in stale.list_stale(session, minutes, now=now, **which):
        item = run_to_dict(row, hosts)
        item["silent_seconds"] = stale.silent_seconds(row, now)
        item["last_heartbeat_at"] = row.get("last_heartbeat_at")
        out.append(item)
    return out


@web_bp.get("/stale", endpoint="stale")
def stale_page():
    minutes, error = _threshold()
    number, page_error = page_number()
    error = error or page_error
    status = 400 if error else 200
    now = utcnow()  # one moment for the count and the rows
    with _db().read() as session:
        total = stale.count_stale(session, minutes, now=now, cap=COUNTED)
        if error is None and total and (error := past_the_end(number, min(total, COUNTED), PER_PAGE, "stale runs")):
            status = 404
        if error:
            number = 1
        rows = _stale_rows(session, minutes, now=now, limit=PER_PAGE, offset=(number - 1) * PER_PAGE)
    shown = pager(number, min(total, COUNTED), PER_PAGE, len(rows), more=total > COUNTED)
    return render("stale.html", "_stale_table.html", status, rows=rows, pager=shown, minutes=minutes, error=error)


@web_bp.post("/stale/mark-failed")
def stale_mark_failed():
    """Step 1 shows what will change; step 2 (confirm=yes) marks the runs failed."""
    minutes, _error = _threshold()
    number, _page_error = page_number()
    event_ids = list(dict.fromkeys(request.form.getlist("event_id")))[:MAX_MARKED]
    reason = (request.form.get("reason") or "").strip()[:2000]
    back = url_for("web.stale", older_than_minutes=minutes)
    if request.form.get("confirm") != "yes":
        with _db().read() as session:
            if request.form.get("all") == "1":  # every run on the page the operator saw
                chosen = _stale_rows(session, minutes, limit=PER_PAGE, offset=(number - 1) * PER_PAGE)
            else:
                chosen = _stale_rows(session, minutes, limit=MAX_MARKED, event_ids=event_ids)
        if not chosen:
            flash("Select at least one run to mark failed.", "error")
            return redirect(back, 303)
        return page("stale_confirm.html", rows=chosen, minutes=minutes, reason=reason)
    actor = f"operator:{web_auth.current_user() or 'console'}"
    changed, skipped = _db().write(lambda s: stale.mark_stale_runs_failed(
        s, event_ids=event_ids, reason=reason or f"silent for more than {minutes} minutes", actor=actor))
    message = f"Marked {len(changed)} run{'' if len(changed) == 1 else 's'} failed."
    if skipped:
        message += f" {len(skipped)} skipped (no longer running or gone)."
    flash(message, "ok")
    return redirect(back, 303)
