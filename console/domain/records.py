"""Run records: from validated models to column values, and from rows to answers."""

from __future__ import annotations

import functools
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
    now = now or utcnow()
    values = record.__dict__.copy()  # the validated fields, as model_dump() gives them, without its cost
    values["api_posted"] = 1 if record.api_posted else 0
    values["created_at"] = record.created_at or now
    values["updated_at"] = now
    values["schema_version"] = 7
    values["last_seen_at"] = record.end_time or record.start_time if record.status != "running" else record.start_time
    if _all_columns(type(record)):
        return values  # a third of the cost of picking the columns again, per run of a batch
    return {key: values[key] for key in _value_columns(values)}


@functools.cache
def _all_columns(model: type) -> bool:
    """True when every field of the model is a column (then its values need no picking)."""
    return set(model.model_fields) <= set(RUN_COLUMNS)


_VALUE_COLUMNS: dict[frozenset, list[str]] = {}


def _value_columns(values: dict[str, Any]) -> list[str]:
    """The table's columns present in `values`, in table order (cached per key set)."""
    key = frozenset(values)
    columns = _VALUE_COLUMNS.get(key)
    if columns is None:
        columns = _VALUE_COLUMNS[key] = [name for name in RUN_COLUMNS if name != "id" and name in values]
    return columns


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
