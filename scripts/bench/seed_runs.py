"""Fill a console database with many runs for the read benchmarks (10,000,000 and more).

    .venv/bin/python scripts/bench/seed_runs.py --runs 10000000 --days 90 --db build/bench/10m.sqlite
    .venv/bin/python scripts/bench/seed_runs.py --runs 1000000 --database-url postgresql+psycopg://...

Migrates the database, then writes runs straight to it in chunks of 50,000, each
chunk one transaction with its events: 200 agents (a few busy, most quiet), 20
job types, 50 hosts, 3 environments, UUID run_ids, an error text on failures,
every 10th run a child of another, and for 10 % of runs three events. Runs are
spread over the last `--days` days, oldest first, so ids and created_at grow
together (give or take a run's duration) as they do in a live console. Each chunk is made from its own seed, so
re-running the same command continues after the last committed chunk with the
same data it would have written (interrupt it at any time). Then it brings the
rollups and the search index up to date (`python -m console rollups rebuild`)
and, last, takes the planner's statistics (ANALYZE) of the filled tables.
A progress bar is drawn when stderr is a terminal.

Point bench_queries.py (`--keep PATH`) and bench_pages.py (`--db PATH`) at the file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CHUNK = 50_000
AGENTS = [f"agent-{i:03d}" for i in range(200)]
JOB_TYPES = [f"job-{i:02d}" for i in range(20)]
HOSTS = [f"host-{i:02d}" for i in range(50)]
ENVIRONMENTS = ["prod", "staging", "dev"]
STATUSES = ["success"] * 80 + ["failure"] * 10 + ["partial"] * 4 + ["timeout"] * 2 + ["cancelled"] * 2 + ["running"] * 2
ERRORS = [
    "connection reset by peer",
    "timeout after 30s waiting for lock",
    "HTTP 503 from upstream",
    "KeyError: 'price'",
    "disk quota exceeded",
    "rate limited by provider",
]
RUN_COLUMNS = (
    "id", "event_id", "run_id", "created_at", "updated_at", "start_time", "end_time", "agent_name", "job_type",
    "status", "items_discovered", "items_succeeded", "items_failed", "duration_ms", "error_summary", "host",
    "environment", "parent_run_id", "last_seen_at", "trigger_type", "metrics_json",
)
EVENT_COLUMNS = ("event_id", "run_id", "event_type", "timestamp", "payload_json", "uid", "created_at")


def stamp(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def chunk_rows(index: int, total: int, days: int, end: datetime) -> tuple[list[tuple], list[tuple]]:
    """Runs (ids index*CHUNK+1 ...) and their events of one chunk: the same every time for the same arguments."""
    rng = random.Random(index)
    span = days * 86400
    runs, events = [], []
    first = index * CHUNK
    for n in range(first, min(total, first + CHUNK)):
        start = end - timedelta(seconds=span * (total - n) / total + rng.random())
        status = rng.choice(STATUSES)
        if status == "running" and n < total - 2000 and n % 200:
            status = "success"  # runs still going are recent, plus a few zombies
        duration = int(rng.lognormvariate(9, 1.2))
        finish = start + timedelta(milliseconds=duration)
        agent = AGENTS[int(rng.paretovariate(1.1)) % len(AGENTS)]
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        runs.append((
            n + 1, event_id, run_id, stamp(finish), stamp(finish), stamp(start),
            None if status == "running" else stamp(finish), agent, rng.choice(JOB_TYPES), status, 10, 9, 1,
            0 if status == "running" else duration,
            f"{rng.choice(ERRORS)} (step {n % 97})" if status in ("failure", "timeout") else None,
            rng.choice(HOSTS), rng.choice(ENVIRONMENTS), f"parent-{n // 10}" if n % 10 == 0 else None,
            stamp(finish if status != "running" else start), "cron", json.dumps({"pages": n % 50}),
        ))
        if n % 10 == 3:
            for k, kind in enumerate(("fetch", "parse", "store")):
                at = stamp(start + timedelta(milliseconds=duration * (k + 1) / 4))
                events.append((event_id, run_id, kind, at, json.dumps({"step": k}), f"{event_id}:{k}", at))
    return runs, events


class SQLiteTarget:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA synchronous = OFF")  # the fill only: a crash loses the chunk, which is re-made
        self.conn.execute("PRAGMA cache_size = -262144")  # 256 MiB: the random-key indexes outgrow the default

    def stored(self) -> int:
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM agent_runs").fetchone()[0]

    def write(self, runs: list[tuple], events: list[tuple]) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany(
            f"INSERT INTO agent_runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})", runs)
        self.conn.executemany(
            f"INSERT INTO run_events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})",
            events)
        self.conn.execute("COMMIT")

    def finish(self) -> None:
        self.conn.close()

    def analyze(self) -> None:
        # After the rebuild: statistics taken while the search index was empty told SQLite
        # its tables held 2 rows, and it planned FTS5's range deletes during every merge
        # as scans of the whole index (seconds per merge at 10,000,000 runs).
        with sqlite3.connect(self.path) as conn:
            conn.execute("ANALYZE")


class PostgresTarget:
    def __init__(self, url: str) -> None:
        import psycopg

        # Autocommit, so that each chunk's `transaction()` commits on its own (not a savepoint of one
        # transaction opened by the first query): an interrupted fill keeps its chunks.
        self.url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.conn = psycopg.connect(self.url, autocommit=True)

    def stored(self) -> int:
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM agent_runs").fetchone()[0]

    def write(self, runs: list[tuple], events: list[tuple]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cursor:
            with cursor.copy(f"COPY agent_runs ({', '.join(RUN_COLUMNS)}) FROM STDIN") as copy:
                for row in runs:
                    copy.write_row(row)
            with cursor.copy(f"COPY run_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                for row in events:
                    copy.write_row(row)

    def finish(self) -> None:
        self.conn.execute("SELECT setval(pg_get_serial_sequence('agent_runs', 'id'), (SELECT max(id) FROM agent_runs))")
        self.conn.execute(
            "SELECT setval(pg_get_serial_sequence('run_events', 'id'), (SELECT coalesce(max(id), 1) FROM run_events))")
        self.conn.close()

    def analyze(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("ANALYZE")


def progress(done: int, total: int, started: float, first: int) -> None:
    if not sys.stderr.isatty():
        return
    rate = (done - first) / max(time.perf_counter() - started, 1e-9)
    left = (total - done) / rate if rate else 0
    filled = int(40 * done / total)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (40 - filled)}] {done:,}/{total:,} runs, {rate:,.0f}/s, "
                     f"{left / 60:.0f} min left ")
    sys.stderr.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=90)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", type=Path, help="SQLite file (created when missing)")
    where.add_argument("--database-url", help="PostgreSQL (postgresql+psycopg://...)")
    parser.add_argument("--end", default="", help="the newest run's time (ISO 8601; default: now, kept on resume)")
    args = parser.parse_args()

    env = {**os.environ, "TELEMETRY_SCHEDULER_ENABLED": "false", "TELEMETRY_LOG_LEVEL": "WARNING"}
    env.pop("TELEMETRY_DB_PATH" if args.database_url else "TELEMETRY_DATABASE_URL", None)
    if args.db:
        args.db.parent.mkdir(parents=True, exist_ok=True)
        env["TELEMETRY_DB_PATH"] = str(args.db)
    else:
        env["TELEMETRY_DATABASE_URL"] = args.database_url
    subprocess.run([sys.executable, "-m", "console", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    target = SQLiteTarget(args.db) if args.db else PostgresTarget(args.database_url)
    # The end time is kept beside the data, so that a resumed fill continues the same series.
    key = hashlib.sha256(str(args.database_url).encode()).hexdigest()[:12]
    marker = Path(str(args.db) + ".seed.json") if args.db else ROOT / "build" / f"seed-postgres-{key}.json"
    stored = target.stored()
    if stored and marker.exists():
        seeded = json.loads(marker.read_text())
        if (seeded["runs"], seeded["days"]) != (args.runs, args.days):
            raise SystemExit(f"this database is being seeded with --runs {seeded['runs']} --days {seeded['days']}")
        end = datetime.fromisoformat(seeded["end"])
    else:
        end = datetime.fromisoformat(args.end) if args.end else datetime.now(UTC)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"end": end.isoformat(), "runs": args.runs, "days": args.days}))
    if stored % CHUNK and stored < args.runs:
        raise SystemExit(f"{stored:,} runs stored, not a whole number of chunks: not written by this script")
    started = time.perf_counter()
    for index in range(stored // CHUNK, (args.runs + CHUNK - 1) // CHUNK):
        target.write(*chunk_rows(index, args.runs, args.days, end))
        progress(min(args.runs, (index + 1) * CHUNK), args.runs, started, stored)
    target.finish()
    filled = time.perf_counter() - started
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "console", "rollups", "rebuild"], cwd=ROOT, env=env, check=True)
    target.analyze()
    print(f"{args.runs:,} runs ({stored:,} were stored already): written in {filled:.0f} s, "
          f"rollups and search index rebuilt in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
