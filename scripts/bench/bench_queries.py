"""Benchmark the read endpoints at 1,000,000 stored runs (or a database seed_runs.py filled).

    .venv/bin/python scripts/bench/bench_queries.py [--rows 1000000] [--repeat 40] [--keep PATH]
    .venv/bin/python scripts/bench/bench_queries.py --database-url postgresql+psycopg://... [--repeat 40]

Fills a migrated SQLite file straight through sqlite3 (triggers dropped for the
fill, then recreated; the search index and the rollups rebuilt afterwards, as an
operator would with `python -m console rollups rebuild`), starts the real
`python -m console serve`, and times each query over a keep-alive http.client
connection on loopback: p50 / p95 in ms. That is server time plus a loopback
round trip (about 0.1 ms here), so an upper bound of the server's own time.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import free_port, wait_healthy  # noqa: E402

AGENTS = [f"agent-{i:02d}" for i in range(25)]
JOB_TYPES = [f"job-{i}" for i in range(8)]
ENVIRONMENTS = ["prod", "staging", "dev"]
HOSTS = [f"host-{i:02d}" for i in range(50)]
STATUSES = ["success"] * 80 + ["failure"] * 10 + ["partial"] * 4 + ["timeout"] * 2 + ["cancelled"] * 2 + ["running"] * 2
ERRORS = [
    "connection reset by peer",
    "timeout after 30s waiting for lock",
    "HTTP 503 from upstream",
    "KeyError: 'price'",
    "disk quota exceeded",
    "rate limited by provider",
]
FMT = "%Y-%m-%dT%H:%M:%S.%f+00:00"


def fill(path: Path, rows: int, days: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA synchronous = OFF")  # the fill only; the console runs with the settings' FULL
    triggers = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    columns = (
        "event_id",
        "run_id",
        "created_at",
        "updated_at",
        "start_time",
        "end_time",
        "agent_name",
        "job_type",
        "status",
        "items_discovered",
        "items_succeeded",
        "items_failed",
        "duration_ms",
        "error_summary",
        "host",
        "environment",
        "parent_run_id",
        "last_seen_at",
        "trigger_type",
    )
    sql = f"INSERT INTO agent_runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    rng = random.Random(42)
    end = datetime.now(UTC)
    span = days * 86400
    step = span / rows
    conn.execute("BEGIN")
    batch = []
    for i in range(rows):
        start = end - timedelta(seconds=span - i * step + rng.random())
        status = rng.choice(STATUSES)
        # Runs still going are recent, plus a few zombies the sweep has not marked yet.
        if status == "running" and i < rows - 2000 and i % 200:
            status = "success"
        duration = int(rng.lognormvariate(9, 1.2))
        finish = start + timedelta(milliseconds=duration)
        start_text = start.strftime(FMT)
        agent = AGENTS[int(rng.paretovariate(1.2)) % len(AGENTS)]
        batch.append(
            (
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                f"{agent}-run-{i}",
                start_text,
                finish.strftime(FMT),
                start_text,
                None if status == "running" else finish.strftime(FMT),
                agent,
                rng.choice(JOB_TYPES),
                status,
                10,
                9,
                1,
                0 if status == "running" else duration,
                f"{rng.choice(ERRORS)} (step {i % 97})" if status in ("failure", "timeout") else None,
                rng.choice(HOSTS),
                rng.choice(ENVIRONMENTS),
                f"parent-{i // 10}" if i % 10 == 0 else None,
                start_text,
                "cron",
            )
        )
        if len(batch) == 50_000:
            conn.executemany(sql, batch)
            batch.clear()
    if batch:
        conn.executemany(sql, batch)
    conn.execute("COMMIT")
    for (trigger_sql,) in triggers:
        conn.execute(trigger_sql)
    conn.execute("INSERT INTO runs_search (runs_search) VALUES ('rebuild')")
    # Every row is indexed and (below) rolled up: the console need not absorb them.
    conn.execute("UPDATE run_watermark SET through_id = (SELECT max(id) FROM agent_runs)")
    conn.execute("ANALYZE")
    conn.close()


def timed(conn: http.client.HTTPConnection, path: str, headers: dict | None = None) -> tuple[float, int, bytes]:
    started = time.perf_counter()
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    return (time.perf_counter() - started) * 1000, response.status, body


def queries(sample: dict) -> list[tuple[str, list[str], dict]]:
    """(label, paths to cycle through, headers)."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hour = lambda h: (now - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    runs = "/api/v1/runs?"
    return [
        ("/health (the floor: server and round trip)", ["/health"], {}),
        ("runs limit=100", [runs + "limit=100"], {}),
        ("runs agent_name", [runs + urlencode({"agent_name": a, "limit": 100}) for a in sample["agents"]], {}),
        ("runs status", [runs + urlencode({"status": s, "limit": 100}) for s in ("failure", "running", "timeout")], {}),
        ("runs job_type", [runs + urlencode({"job_type": j, "limit": 100}) for j in sample["job_types"]], {}),
        ("runs parent_run_id", [runs + urlencode({"parent_run_id": p}) for p in sample["parents"]], {}),
        ("runs environment", [runs + urlencode({"environment": e, "limit": 100}) for e in sample["environments"]], {}),
        ("runs host", [runs + urlencode({"host": h, "limit": 100}) for h in sample["hosts"]], {}),
        (
            "runs agent_name+status",
            [runs + urlencode({"agent_name": a, "status": "failure", "limit": 100}) for a in sample["agents"]],
            {},
        ),
        (
            "runs created_after/before (1 h)",
            [
                runs + urlencode({"created_after": hour(h + 1), "created_before": hour(h), "limit": 100})
                for h in range(1, 200, 7)
            ],
            {},
        ),
        (
            "runs start_time_from/to (1 h)",
            [
                runs + urlencode({"start_time_from": hour(h + 1), "start_time_to": hour(h), "limit": 100})
                for h in range(1, 200, 7)
            ],
            {},
        ),
        ("runs offset=5000", [runs + "limit=100&offset=5000"], {}),
        ("runs cursor (deep in the set)", [runs + urlencode({"cursor": c, "limit": 100}) for c in sample["cursors"]], {}),
        (
            "runs q (run_id substring)",
            [runs + urlencode({"q": r, "limit": 100}) for r in sample["run_id_parts"]],
            {},
        ),
        ("runs q (error text)", [runs + urlencode({"q": e.split()[0], "limit": 100}) for e in ERRORS], {}),
        ("runs q (event_id prefix)", [runs + urlencode({"q": e[:8]}) for e in sample["event_ids"]], {}),
        ("runs q (no match)", [runs + urlencode({"q": f"zzq{n}"}) for n in range(10)], {}),
        ("metrics (JSON)", ["/metrics"], {}),
        ("metrics (Prometheus)", ["/metrics"], {"Accept": "text/plain"}),
        ("metadata", ["/api/v1/metadata"], {}),
        ("stats (default: 7 days, by day)", ["/api/v1/stats"], {}),
        ("stats (30 days, by hour)", ["/api/v1/stats?" + urlencode({"since": hour(24 * 30), "bucket": "hour"})], {}),
        # Three times the hours of the line above: at 1,000,000 runs, about the answer of
        # 30 days at 10,000,000 (about three times the (hour, agent, status) rows).
        ("stats (90 days, by hour)", ["/api/v1/stats?" + urlencode({"since": hour(24 * 90), "bucket": "hour"})], {}),
        (
            "stats (all time, one agent)",
            ["/api/v1/stats?" + urlencode({"since": "2000-01-01", "agent_name": a}) for a in sample["agents"][:5]],
            {},
        ),
        (
            "stats (one agent, 30 days, by hour)",
            ["/api/v1/stats?" + urlencode({"since": hour(24 * 30), "bucket": "hour", "agent_name": a})
             for a in sample["agents"][:5]],
            {},
        ),
        ("runs/stale", ["/api/v1/runs/stale"], {}),
        ("run events", [f"/api/v1/runs/{e}/events" for e in sample["event_ids"]], {}),
        ("run by event_id", [f"/api/v1/runs/{e}" for e in sample["event_ids"]], {}),
    ]


def sample_values(url: str) -> dict[str, list[str]]:
    """Values to filter by, read from the database (this script's fill, or seed_runs.py's)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    conn = engine.connect()
    rng = random.Random(5)
    (highest,) = conn.execute(sa.text("SELECT max(id) FROM agent_runs")).fetchone()
    stored = conn.execute(sa.text("SELECT count(*) FROM agent_runs")).scalar()
    some = [rng.randrange(1, highest + 1) for _ in range(20)]

    def distinct(column: str) -> list[str]:
        # A loose index scan, as the metadata endpoint does: one probe per value.
        return [r[0] for r in conn.execute(sa.text(
            f"WITH RECURSIVE v(x) AS (SELECT min({column}) FROM agent_runs UNION ALL SELECT (SELECT min({column}) "
            f"FROM agent_runs WHERE {column} > v.x) FROM v WHERE v.x IS NOT NULL) SELECT x FROM v WHERE x IS NOT NULL"))]

    def at(sql: str) -> list:
        return [row for i in some for row in conn.execute(sa.text(sql), {"i": i})]

    busiest = [r[0] for r in conn.execute(sa.text(
        "SELECT agent_name FROM run_rollup_totals GROUP BY agent_name ORDER BY sum(runs) DESC LIMIT 10"))]
    agents = distinct("agent_name")
    sample = {
        "stored": stored,
        "agents": busiest[:5] + rng.sample(agents, min(5, len(agents))),
        "job_types": distinct("job_type"),
        "hosts": distinct("host")[:10],
        "environments": distinct("environment"),
        "event_ids": [r[0] for r in at("SELECT event_id FROM agent_runs WHERE id >= :i LIMIT 1")],
        "parents": [r[0] for r in at(
            "SELECT parent_run_id FROM agent_runs WHERE id >= :i AND parent_run_id IS NOT NULL LIMIT 1")],
        # The end of a run_id: a substring, not a prefix.
        "run_id_parts": [r[0][-10:] for r in at("SELECT run_id FROM agent_runs WHERE id >= :i LIMIT 1")],
        # Keyset cursors (as the Link header carries them) at rows spread through the whole set.
        "cursors": [base64.urlsafe_b64encode(json.dumps(
                        [r[0].isoformat() if isinstance(r[0], datetime) else r[0], r[1]],
                        separators=(",", ":")).encode()).decode().rstrip("=")
                    for r in at("SELECT created_at, id FROM agent_runs WHERE id >= :i LIMIT 1")],
    }
    conn.close()
    engine.dispose()
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--keep", type=Path, help="reuse / keep the filled file here (or seed_runs.py's file)")
    parser.add_argument("--database-url", help="a PostgreSQL database filled by seed_runs.py (instead of a file)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-queries-"))
    path = args.keep or workdir / "telemetry.sqlite"
    env_base = {
        **os.environ,
        "TELEMETRY_DB_PATH": str(path),
        "TELEMETRY_SCHEDULER_ENABLED": "false",
        "TELEMETRY_LOG_LEVEL": "WARNING",
    }
    env_base.pop("TELEMETRY_DATABASE_URL", None)
    if args.database_url:
        env_base["TELEMETRY_DATABASE_URL"] = args.database_url
    elif not path.exists():
        subprocess.run(
            [sys.executable, "-m", "console", "db", "upgrade"], cwd=ROOT, env=env_base, check=True, capture_output=True
        )
        started = time.perf_counter()
        fill(path, args.rows, args.days)
        filled = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "console", "rollups", "rebuild"], cwd=ROOT, env=env_base, check=True)
        print(f"filled {args.rows} rows in {filled:.1f} s; rollups rebuilt in {time.perf_counter() - started:.1f} s")

    url = args.database_url or f"sqlite:///{path}"
    sample = sample_values(url)
    stored = sample.pop("stored")

    port = free_port()
    log = open(workdir / "console.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "console", "serve", "--no-upgrade"],
        cwd=ROOT,
        env={**env_base, "TELEMETRY_API_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    rows_out = []
    try:
        wait_healthy(port, proc)
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for label, paths, headers in queries(sample):
            timed(client, paths[0], headers)  # warm
            times, statuses, sizes = [], set(), []
            for i in range(args.repeat):
                ms, status, body = timed(client, paths[i % len(paths)], headers)
                times.append(ms)
                statuses.add(status)
                sizes.append(len(body))
            times.sort()
            p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
            rows_out.append(
                (
                    label,
                    statistics.median(times),
                    p95,
                    ",".join(map(str, sorted(statuses))),
                    int(statistics.mean(sizes)),
                )
            )
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    print(
        f"\n{'PostgreSQL' if args.database_url else 'SQLite'}, {stored:,} runs, {args.repeat} requests per query, 1 worker; "
        f"ms per request (loopback, keep-alive)"
    )
    print(f"{'query':<44} {'p50 ms':>8} {'p95 ms':>8} {'status':>8} {'bytes':>8}")
    for label, p50, p95, statuses, size in rows_out:
        print(f"{label:<44} {p50:>8.1f} {p95:>8.1f} {statuses:>8} {size:>8}")
    print(json.dumps({"database": args.database_url or str(path)}))


if __name__ == "__main__":
    main()
