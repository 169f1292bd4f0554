"""The stale sweep (off by default): runs silent longer than TELEMETRY_STALE_SWEEP_MINUTES
are marked `failure` by the same domain function as the stale page
(console.domain.stale.mark_stale_runs_failed), with actor "sweep", so that late news follows
the stale-verdict rules (a later heartbeat or event reopens a sweep's verdict).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from console.core.settings import Settings
from console.domain.stale import mark_stale_runs_failed
from console.store.db import Database


def scheduled_sweep(db: Database, settings: Settings) -> dict[str, Any]:
    """The scheduled job: apply TELEMETRY_STALE_SWEEP_MINUTES."""
    return sweep_stale_runs(db, settings.stale_sweep_minutes)


def sweep_stale_runs(db: Database, minutes: int, now: datetime | None = None) -> dict[str, Any]:
    """Mark running runs silent longer than `minutes` failed; return how many."""
    if minutes <= 0:
        return {"marked_failed": 0, "note": "the stale sweep is off (minutes = 0)"}
    reason = f"the stale sweep found no report for more than {minutes} minutes"
    changed, _skipped = db.write(lambda s: mark_stale_runs_failed(
        s, older_than_minutes=minutes, reason=reason, actor="sweep", now=now))
    return {"marked_failed": len(changed), "minutes": minutes, "event_ids": changed[:20]}
