"""Run detail page and its actions: mark failed/cancelled, link a commit, delete."""

from __future__ import annotations

from flask import current_app, flash, redirect, request, url_for
from pydantic import ValidationError

from console.core.timeutil import utcnow
from console.domain import events as run_events
from console.domain import runs, stale
from console.domain.errors import NotFound
from console.domain.records import INTERNAL_COLUMNS, run_to_dict
from console.domain.validation import COMMIT_SOURCES, CommitAssociation, RunUpdate
from console.jobs import export, history
from console.web import auth as web_auth
from console.web import queries as web_queries
from console.web import web_bp
from console.web.alerts import agent_incidents
from console.web.formatting import as_datetime
from console.web.render import page, render, wants_partial

EVENTS_SHOWN = 500
MAX_REASON_CHARS = 2000


def _db():
    return current_app.extensions["telemetry_db"]


def _actor() -> str:
    return f"operator:{web_auth.current_user() or 'console'}"


def _load(session, event_id: str) -> dict:
    """Everything the detail page shows of one run (NotFound → 404)."""
    row = runs.get_run(session, event_id)
    run = run_to_dict(row, current_app.config["SETTINGS"].git_hosts)
    run.update({key: row[key] for key in INTERNAL_COLUMNS})
    events, more_events = run_events.list_events(session, event_id, limit=EVENTS_SHOWN)
    for item in events:
        moment = as_datetime(item["timestamp"])
        item["offset_ms"] = int((moment - row["start_time"]).total_seconds() * 1000) if moment else None
    parents = web_queries.runs_with_run_id(session, run["parent_run_id"]) if run["parent_run_id"] else []
    children, _more = runs.list_runs(session, runs.RunFilters(parent_run_id=run["run_id"]), limit=50)
    return {
        "run": run,
        "events": events,
        "more_events": more_events is not None,
        "parents": [p for p in parents if p["event_id"] != event_id],
        "children": [ch for ch in children if ch["event_id"] != event_id],
        "exports": export.export_states(session, event_id),
        "incidents": agent_incidents(session, run["agent_name"]),
        "commit_sources": COMMIT_SOURCES,
        "commit_errors": {},
        "commit_form": {},
    }


@web_bp.get("/runs/<event_id>")
def run_detail(event_id: str):
    with _db().read() as session:
        context = _load(session, event_id)
    return page("run.html", **context)


@web_bp.post("/runs/<event_id>/status")
def run_set_status(event_id: str):
    """Mark a running run failed or cancelled, with the operator's reason."""
    target = request.form.get("status")
    reason = (request.form.get("reason") or "").strip()[:MAX_REASON_CHARS]
    if target not in ("failure", "cancelled"):
        flash("Choose failed or cancelled.", "error")
        return redirect(url_for("web.run_detail", event_id=event_id), 303)
    actor = _actor()

    def work(session):
        row = runs.get_run(session, event_id)
        if row["status"] != "running":
            return False
        if target == "failure":
            changed, _skipped = stale.mark_stale_runs_failed(
                session, event_ids=[event_id], reason=reason or "marked failed in the console", actor=actor)
            return bool(changed)
        summary = f"Cancelled by {actor}" + (f": {reason}" if reason else "")
        runs.update_run(session, event_id, RunUpdate(status="cancelled", end_time=utcnow(), error_summary=summary))
        return True

    changed = _db().write(work)
    if changed:
        flash("Marked failed." if target == "failure" else "Marked cancelled.", "ok")
    else:
        flash("Nothing changed: the run is no longer running.", "error")
    return redirect(url_for("web.run_detail", event_id=event_id), 303)


@web_bp.post("/runs/<event_id>/commit")
def run_link_commit(event_id: str):
    """Link a commit, validated by the same model as the API's associate-commit."""
    form = {
        "commit_hash": (request.form.get("commit_hash") or "").strip(),
        "commit_source": request.form.get("commit_source") or "",
        "commit_author": (request.form.get("commit_author") or "").strip() or None,
    }
    errors: dict[str, str] = {}
    try:
        commit = CommitAssociation.model_validate(form)
    except ValidationError as exc:
        for item in exc.errors(include_url=False, include_input=False, include_context=False):
            errors.setdefault(str(item["loc"][0]) if item["loc"] else "commit_hash", item["msg"])
        commit = None
    if commit is not None:
        _db().write(lambda s: runs.associate_commit(s, event_id, commit))
        if not wants_partial():
            flash("Commit linked.", "ok")
            return redirect(url_for("web.run_detail", event_id=event_id), 303)
    with _db().read() as session:
        context = _load(session, event_id)
    context.update(commit_errors=errors, commit_form=form if errors else {}, commit_saved=commit is not None)
    # The whole page answers 422; the htmx swap answers 200, as htmx swaps only
    # successful answers (and a 4xx would show as an error in the browser console).
    status = 422 if errors and not wants_partial() else 200
    return render("run.html", "_commit.html", status, **context)


def _export_runs() -> bool:
    """True while a scheduler leader is alive somewhere (it runs the export job)."""
    with _db().read() as session:
        return history.live_leader(session, current_app.config["SETTINGS"].scheduler_lease_seconds) is not None


@web_bp.post("/runs/<event_id>/export/retry")
def run_retry_export(event_id: str):
    """Make a rejected or given-up export pending again (the export job sends it)."""
    destination = request.form.get("destination") or None

    def work(session):
        runs.get_run(session, event_id)
        return export.retry_export(session, event_id, destination)

    count = _db().write(work)
    if not count:
        flash("Nothing to retry.", "error")
    elif _export_runs():
        flash("Export queued again.", "ok")
    else:
        lease = current_app.config["SETTINGS"].scheduler_lease_seconds
        flash(f"Export queued again, but {history.unattended('export', lease)}.", "error")
    return redirect(url_for("web.run_detail", event_id=event_id), 303)


@web_bp.route("/runs/<event_id>/delete", methods=["GET", "POST"])
def run_delete(event_id: str):
    """Delete a run and its events, after an explicit confirmation step."""
    if request.method == "POST" and request.form.get("confirm") == "yes":
        try:
            _db().write(lambda s: runs.delete_run(s, event_id, actor=_actor()))
        except NotFound:
            flash("The run was already gone.", "error")
            return redirect(url_for("web.runs"), 303)
        flash(f"Deleted run {event_id} and its events.", "ok")
        return redirect(url_for("web.runs"), 303)
    with _db().read() as session:
        run = run_to_dict(runs.get_run(session, event_id))
    return page("run_delete.html", run=run)
