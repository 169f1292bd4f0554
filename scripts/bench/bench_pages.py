#!/usr/bin/env python
"""Server time of the console pages with many runs stored (default 1,000,000, SQLite).

Fills a database once (kept at --db, reused on the next run), then renders each page
through the WSGI app (Flask test client: the whole server-side path, no network) and
prints p50 / p95 / max in milliseconds.

    .venv/bin/python scripts/bench/bench_pages.py --runs 1000000 --db build/bench/pages.sqlite
    .venv/bin/python scripts/bench/bench_pages.py --database-url postgresql+psycopg://... (seed_runs.py's)
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from console.app import create_app  # noqa: E402
from console.core.settings import load_settings  # noqa: E402
from console.core.timeutil import parse_timestamp  # noqa: E402
from console.domain import runs, stats  # noqa: E402
from console.domain.validation import RunCreate  # noqa: E402
from console.store import migrate  # noqa: E402

AGENTS = [f"agent-{i:02d}" for i in range(20)]
JOBS = ["crawl", "index", "review", "export", "load", "sync"]
STATUSES = ["success"] * 16 + ["failure", "failure", "partial", "timeout", "cancelled"]


def fill(app, total: int, batch: int = 5000) -> None:
    db = app.extensions["telemetry_db"]
    with db.read() as session:
        have = sum(sum(c.values()) for c in stats.totals_by_agent(session).values())
    if have >= total:
        print(f"database holds {have:,} runs already")
        return
    rng = random.Random(1)
    now = datetime.now(UTC)
    started = time.perf_counter()
    for first in range(have, total, batch):
        records = []
        for n in range(first, min(total, first + batch)):
            # Spread over 60 days, oldest first, so created_at grows with n.
            start = now - timedelta(seconds=(total - n) * 60 * 86400 / total)
            status = "running" if n > total - 50 else rng.choice(STATUSES)
            records.append(RunCreate.model_validate({
                "event_id": f"bench-{n:08d}", "run_id": f"run-{n:08d}", "agent_name": rng.choice(AGENTS),
                "job_type": rng.choice(JOBS), "start_time": start, "created_at": start,
                "end_time": None if status == "running" else start + timedelta(seconds=90),
                "status": status, "duration_ms": 0 if status == "running" else rng.randint(1000, 900_000),
                "error_summary": f"Error {n % 977}: something broke" if status == "failure" else None,
            }))
        db.write(lambda s, records=records: runs.create_runs(s, records))
        done = min(total, first + batch)
        if done % 100_000 < batch:
            print(f"  {done:,} runs ({time.perf_counter() - started:.0f} s)", flush=True)


def sample(session) -> dict[str, str]:
    """From the database (this script's fill or seed_runs.py's): the busiest agent, a job type,
    a host, an environment, a piece of a run_id from the middle of the set for `q`, and a
    cursor there."""
    agent = session.execute(text(
        "SELECT agent_name FROM run_rollup_totals GROUP BY agent_name ORDER BY sum(runs) DESC LIMIT 1")).scalar_one()
    job = session.execute(text("SELECT min(job_type) FROM agent_runs")).scalar_one()
    host = session.execute(text("SELECT min(host) FROM agent_runs")).scalar_one() or ""
    environment = session.execute(text("SELECT min(environment) FROM agent_runs")).scalar_one() or ""
    middle = session.execute(text(
        "SELECT id, run_id, created_at FROM agent_runs WHERE id >= (SELECT max(id) / 2 FROM agent_runs) "
        "ORDER BY id LIMIT 1")).mappings().one()
    created = middle["created_at"]
    cursor = runs.encode_cursor({"id": middle["id"], "created_at": parse_timestamp(created) if isinstance(created, str)
                                 else created})
    return {"agent": agent, "job": job, "host": host, "environment": environment, "q": middle["run_id"][-8:],
            "deep": cursor}


def measure(client, path: str, repeat: int) -> tuple[float, float, float, int]:
    client.get(path)  # warm caches and the statement cache
    times = []
    status = 0
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        status = response.status_code
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    return statistics.median(times), p95, times[-1], status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--db", default=str(ROOT / "build" / "bench" / "pages.sqlite"))
    parser.add_argument("--database-url", help="a PostgreSQL database (seed_runs.py's) instead of the file")
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    Path(options.db).parent.mkdir(parents=True, exist_ok=True)
    where = {"TELEMETRY_DATABASE_URL": options.database_url} if options.database_url else {"TELEMETRY_DB_PATH": options.db}
    settings = load_settings({**where, "TELEMETRY_SECRET_KEY": "bench"})
    migrate.upgrade(settings)
    app = create_app(settings, {"TESTING": True})
    fill(app, options.runs)
    client = app.test_client()
    with app.extensions["telemetry_db"].read() as session:
        newest, cursor = runs.list_runs(session, runs.RunFilters(), limit=50)
        s = sample(session)
    agent, job, q = s["agent"], s["job"], s["q"]
    paths = [
        "/", f"/?agent={agent}", "/?status=failure", f"/?job_type={job}", "/?range=24h",
        f"/?agent={agent}&status=failure&range=7d", f"/?cursor={cursor}", f"/?cursor={s['deep']}", f"/?q={q}",
        f"/runs/counts?q={q}", f"/runs/counts?job_type={job}", f"/runs/counts?job_type={job}&range=7d",
        f"/runs/counts?job_type={job}&status=failure", f"/runs/counts?host={s['host']}",
        f"/runs/counts?environment={s['environment']}&range=24h", f"/runs/{newest[0]['event_id']}",
        "/stale", "/agents",
    ]
    for path in paths:  # warm up, then freeze what is loaded, as a gunicorn worker does
        client.get(path)
    gc.freeze()
    print(f"\n{'page':48} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  status")
    for path in paths:
        p50, p95, worst, status = measure(client, path, options.repeat)
        print(f"{path[:48]:48} {p50:8.1f} {p95:8.1f} {worst:8.1f}  {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
