"""GET /api/v1/metadata: distinct agent names, job types and other run fields.

Answers are cached for at most CACHE_SECONDS per worker, and on SQLite dropped as
soon as the database changes (PRAGMA data_version, read on a connection of its own
that never writes, so that every commit by anyone moves it).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Optional

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field

from console.api import api_bp
from console.api.spec import route
from console.domain import runs
from console.domain.errors import NotFound
from console.store.db import Database

CACHE_SECONDS = 5.0


class Metadata(BaseModel):
    agent_names: list[str]
    job_types: list[str]
    counts: dict[str, int]
    cache_hit: bool


class FieldValues(BaseModel):
    field: str
    values: list[str]
    count: int
    truncated: bool


class FieldValuesQuery(BaseModel):
    """GET /api/v1/metadata/{field}: how many values at most."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(runs.METADATA_DEFAULT_LIMIT, ge=1, le=runs.METADATA_MAX_LIMIT,
                       description="the first values in sorted order; `truncated` says more exist")


class MetadataCache:
    """Answers by key, valid for CACHE_SECONDS and (SQLite) while data_version holds."""

    def __init__(self, db: Database):
        self._db = db
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Optional[int], Any]] = {}
        self._conn: Optional[sqlite3.Connection] = None

    def _data_version(self) -> Optional[int]:
        path = self._db.settings.db_path
        if path is None:
            return None
        if self._conn is None:
            self._conn = sqlite3.connect(str(path), timeout=5, check_same_thread=False, isolation_level=None)
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def get(self, key: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """(value, cache_hit)."""
        with self._lock:
            version = self._data_version()
            entry = self._entries.get(key)
            if entry is not None and time.monotonic() - entry[0] < CACHE_SECONDS and entry[1] == version:
                return entry[2], True
        value = compute()
        with self._lock:
            self._entries[key] = (time.monotonic(), version, value)
        return value, False


def _cache() -> MetadataCache:
    cache = current_app.extensions.get("telemetry_metadata_cache")
    if cache is None:
        cache = current_app.extensions.setdefault(
            "telemetry_metadata_cache", MetadataCache(current_app.extensions["telemetry_db"])
        )
    return cache


def _distinct(field: str, limit: int = runs.METADATA_MAX_LIMIT) -> Callable[[], list[str]]:
    def compute() -> list[str]:
        with current_app.extensions["telemetry_db"].read() as session:
            return runs.distinct_values(session, field, limit)

    return compute


@route(api_bp, "/metadata", "GET", summary="Distinct agent names and job types (cached up to 5 s)",
       tags=["metadata"], responses={200: Metadata}, operation_id="get_metadata")
def metadata():
    def compute():
        return _distinct("agent_name")(), _distinct("job_type")()

    (agent_names, job_types), hit = _cache().get("", compute)
    return {
        "agent_names": agent_names,
        "job_types": job_types,
        "counts": {"agent_names": len(agent_names), "job_types": len(job_types)},
        "cache_hit": hit,
    }


@route(api_bp, "/metadata/<field>", "GET", summary="Distinct values of one run field, the first `limit` of them",
       tags=["metadata"], query=FieldValuesQuery, responses={200: FieldValues},
       operation_id="list_field_values")
def metadata_field(field: str, query: FieldValuesQuery):
    if field not in runs.METADATA_FIELDS:
        raise NotFound(f"field {field!r} is not offered; use one of {', '.join(sorted(runs.METADATA_FIELDS))}")
    # One more than asked for tells whether the list was cut.
    values, _hit = _cache().get(f"{field}:{query.limit}", _distinct(field, query.limit + 1))
    truncated = len(values) > query.limit
    values = values[:query.limit]
    return {"field": field, "values": values, "count": len(values), "truncated": truncated}
