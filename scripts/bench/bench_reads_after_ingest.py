"""/metrics and the default /api/v1/stats as users meet them: right after the runs arrived through the API.

    .venv/bin/python scripts/bench/bench_reads_after_ingest.py [--runs 100000] [--gets 60] [--batch 1000]
    .venv/bin/python scripts/bench/bench_reads_after_ingest.py --runs 10000 --db COPY_OF_10M.sqlite
    .venv/bin/python scripts/bench/bench_reads_after_ingest.py --runs 10000 --database-url postgresql+psycopg://...

Starts `python -m console serve` on a fresh SQLite file (DELETE / FULL, the
default workers and threads), or on a database seed_runs.py filled (`--db`, a
copy you can spare: the runs are added to it; or `--database-url`), posts `--runs` runs through POST /api/v1/runs/batch
(uuid4 ids, created now, started one every 3 seconds up to now, as
bench_batch_ceiling.py makes them), then a few single POSTs (their runs wait above the insert watermark
until a read or the writer catches up), and then, with no rollup rebuild, times
`--gets` GETs of each endpoint over one keep-alive connection on loopback (server
time plus a round trip of about 0.1 ms). Every answer is checked (200, and the
run count equal to what was posted). Then the same GETs, each after one single
POST (untimed), as during ingest: no answer kept since the last commit serves them
(console/store/answer_cache.py). Prints p50 / p95 / max in ms, beside GET /health
in the same run (the floor: the server and the round trip).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench_batch_ceiling import make_bodies  # noqa: E402
from common import free_port, start_console, stop_console  # noqa: E402

ENDPOINTS = [
    ("GET /health (floor)", "/health", {}),
    ("GET /metrics (JSON)", "/metrics", {}),
    ("GET /metrics (Prometheus)", "/metrics", {"Accept": "text/plain"}),
    ("GET /api/v1/stats", "/api/v1/stats", {}),
]


def request(conn, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> bytes:
    conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    if response.status not in (200, 201):
        raise SystemExit(f"{method} {path} answered {response.status}: {data[:300]!r}")
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100000)
    parser.add_argument("--gets", type=int, default=60)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--singles", type=int, default=50, help="single POSTs after the batches")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", type=Path, help="a seeded SQLite file to add the runs to (default: a fresh file)")
    where.add_argument("--database-url", help="a seeded PostgreSQL database to add the runs to")
    args = parser.parse_args()

    from console.core.settings import load_settings
    from console.store import migrate

    tmp = Path(tempfile.mkdtemp(prefix="bench-reads-"))
    fresh = not (args.db or args.database_url)
    target = {"TELEMETRY_DATABASE_URL": args.database_url} if args.database_url else {
        "TELEMETRY_DB_PATH": str(args.db or tmp / "console.sqlite")}
    migrate.upgrade(load_settings(target))
    env = {**os.environ, "TELEMETRY_SCHEDULER_ENABLED": "false", "TELEMETRY_LOG_LEVEL": "WARNING",
           "TELEMETRY_SECRET_KEY": "bench", "TELEMETRY_BASE_DIR": str(tmp / "base"),
           "TELEMETRY_DB_JOURNAL_MODE": "DELETE", "TELEMETRY_DB_SYNCHRONOUS": "FULL",
           "TELEMETRY_API_PORT": str(free_port())}
    for name in ("TELEMETRY_DATABASE_URL", "TELEMETRY_DB_PATH", "TELEMETRY_API_WORKERS", "TELEMETRY_API_THREADS"):
        env.pop(name, None)
    env.update(target)
    proc = start_console(env, tmp / "console.log")
    results = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", int(env["TELEMETRY_API_PORT"]), timeout=600)
        before = json.loads(request(conn, "GET", "/metrics"))
        # Runs created now: every one of them is in /metrics' recent_24h window. They
        # started one every 3 seconds up to now, so the default stats (7 days) hold them.
        started_from = datetime.now(UTC) - timedelta(seconds=3 * (args.runs + args.singles + args.gets * 8))
        for body in make_bodies(0, args.runs, args.batch, random.Random(1), started_from):
            request(conn, "POST", "/api/v1/runs/batch", body)
        single = json.loads(make_bodies(args.runs, args.singles, args.singles, random.Random(2), started_from)[0])
        for record in single:
            record["event_id"] = str(uuid.uuid4())
            request(conn, "POST", "/api/v1/runs", json.dumps(record).encode())
        expected = args.runs + args.singles + before["total_runs"]
        for label, path_, headers in ENDPOINTS:
            times = []
            for _ in range(args.gets):
                started = time.perf_counter()
                data = request(conn, "GET", path_, headers=headers)
                times.append((time.perf_counter() - started) * 1000)
            if path_ == "/metrics" and not headers:
                answer = json.loads(data)
                # On a seeded database, runs also leave the 24-hour window meanwhile: only the total is exact.
                recent = args.runs + args.singles + before["recent_24h"] if fresh else answer["recent_24h"]
                if answer["total_runs"] != expected or answer["recent_24h"] != recent:
                    raise SystemExit(f"/metrics counts {answer['total_runs']} / {answer['recent_24h']}, "
                                     f"not {expected} / {recent}")
            times.sort()
            results.append((label, statistics.median(times), times[int(0.95 * (len(times) - 1))], times[-1]))
        # As during ingest: one single POST before each GET, so that no answer kept
        # since the last commit can serve it (each is computed, after the catch-up).
        for label, path_, headers in ENDPOINTS[1:]:
            times = []
            first = args.runs + args.singles + len(results) * args.gets
            for record in json.loads(make_bodies(first, args.gets, args.gets, random.Random(4), started_from)[0]):
                record["event_id"] = str(uuid.uuid4())
                request(conn, "POST", "/api/v1/runs", json.dumps(record).encode())
                started = time.perf_counter()
                request(conn, "GET", path_, headers=headers)
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            results.append((f"{label}, after a write", statistics.median(times),
                            times[int(0.95 * (len(times) - 1))], times[-1]))
    finally:
        stop_console(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    where = "PostgreSQL" if args.database_url else "SQLite DELETE/FULL"
    print(f"\n{before['total_runs']:,} runs stored, then {args.runs:,} posted in batches of {args.batch} + "
          f"{args.singles} single POSTs, then {args.gets} GETs each; {where}; {os.cpu_count()} CPUs")
    print(f"{'endpoint':<44} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}")
    for label, p50, p95, worst in results:
        print(f"{label:<44} {p50:>7.2f} {p95:>7.2f} {worst:>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
