"""Build a SQLite file like the older local-telemetry tool's (schema v7), with varied rows."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

SCHEMA = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_v7.sql"
STATUSES = ["running", "success", "failure", "partial", "timeout", "cancelled"]


def _time_text(moment: datetime, style: int) -> str:
    """The forms such files hold: zoned ISO (several offsets) and SQLite's naive form."""
    if style == 0:
        return moment.isoformat()  # +00:00 with microseconds
    if style == 1:
        return moment.strftime("%Y-%m-%d %H:%M:%S")  # datetime('now') form, UTC
    if style == 2:
        return moment.astimezone(timezone(timedelta(hours=-8))).isoformat()
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_legacy_file(path: Path, runs: int = 3000, seed: int = 7) -> dict[str, int]:
    """Write a v7 file with `runs` runs, events and commits; return the row counts."""
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA.read_text())
    base = datetime(2026, 1, 1, tzinfo=UTC)
    run_rows, event_rows, commit_rows = [], [], []
    for i in range(runs):
        created = base + timedelta(minutes=i * 7, seconds=rng.randint(0, 59), microseconds=rng.randint(0, 999999))
        run_id = f"run-{i // 3}"  # several runs share a run_id, as in practice
        metrics = rng.choice([None, json.dumps({"n": i}), json.dumps(json.dumps({"wrapped": i})), "plain text"])
        status = rng.choice(STATUSES)
        run_rows.append((
            f"evt-{i:06d}", run_id, _time_text(created, i % 4), _time_text(created, (i + 1) % 4),
            f"agent-{i % 5}", rng.choice(["index", "crawl", "sync"]), status,
            rng.randint(0, 50), rng.randint(0, 50), rng.randint(0, 5), rng.randint(0, 3), rng.randint(0, 10**6),
            metrics, rng.choice([None, "git@github.com:acme/repo.git"]),
        ))
        if i % 3 == 0:
            event_rows.append((run_id, "checkpoint", _time_text(created, i % 4), json.dumps({"step": i})))
        if i % 50 == 0:
            commit_rows.append((f"{i:07x}abc", run_id, f"agent-{i % 5}"))
    conn.executemany(
        "INSERT INTO agent_runs (event_id, run_id, created_at, start_time, agent_name, job_type, status, "
        "items_discovered, items_succeeded, items_failed, items_skipped, duration_ms, metrics_json, git_repo) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        run_rows,
    )
    # A few rows written with the column defaults (naive datetime('now') form).
    conn.execute(
        "INSERT INTO agent_runs (event_id, run_id, start_time, agent_name, job_type) "
        "VALUES ('evt-default', 'run-default', '2026-01-02 03:04:05', 'agent-0', 'index')"
    )
    conn.executemany("INSERT INTO run_events (run_id, event_type, timestamp, payload_json) VALUES (?,?,?,?)", event_rows)
    conn.executemany("INSERT INTO commits (commit_hash, run_id, agent_name) VALUES (?,?,?)", commit_rows)
    conn.commit()
    conn.close()
    return {"agent_runs": runs + 1, "run_events": len(event_rows), "commits": len(commit_rows)}
