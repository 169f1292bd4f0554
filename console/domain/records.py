"""Run records: from validated models to column values, and from rows to answers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from console.core.timeutil import format_utc, utcnow
from console.domain.links import commit_url, repo_url
from console.domain.validation import RunCreate
from console.store.models import agent_runs

RUN_COLUMNS = [c.name for c in agent_runs.columns]
# Ours, kept off the compatible answer unless asked for.
INTERNAL_COLUMNS = {"last_seen_at", "last_heartbeat_at", "stale_marked_at", "stale_marked_by", "reopened"}


def run_values(record: RunCreate, now: datetime | None = None) -> dict[str, Any]:
    """Column values for inserting `record` (defaults filled in, status canonical)."""
    return field_values(record.__dict__, now)  # the validated fields, as model_dump() gives them, without its cost


def field_values(fields: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Column values for inserting a run from RunCreate's validated fields (a model's
    `__dict__`, or console/domain/hand_check.py `well_formed_run`), in a new dict.
    Every field of RunCreate is a column, so the fields are taken as they are."""
    values = fields.copy()
    now = now or utcnow()
    values["api_posted"] = 1 if values["api_posted"] else 0
    values["created_at"] = values["created_at"] or now
    values["updated_at"] = now
    values["schema_version"] = 7
    end, start = values["end_time"], values["start_time"]
    values["last_seen_at"] = (end or start) if values["status"] != "running" else start
    return values


def run_to_dict(row: Mapping[str, Any], git_hosts: tuple = ()) -> dict[str, Any]:
    """A stored row as the API returns it: every time in UTC form, links derived."""
    out: dict[str, Any] = {}
    for key in RUN_COLUMNS:
        if key in INTERNAL_COLUMNS:
            continue
        value = row[key]
        if isinstance(value, datetime):
            value = format_utc(value)
        out[key] = value
    out["api_posted"] = bool(out.get("api_posted"))
    out["commit_url"] = commit_url(row["git_repo"], row["git_commit_hash"], git_hosts)
    out["repo_url"] = repo_url(row["git_repo"], git_hosts)
    return out
