"""POST /api/v1/runs/batch as the older tool's clients send it, against the ceiling of this machine.

    .venv/bin/python scripts/bench/bench_batch_ceiling.py [--stored 100000,1000000] [--measure 30000]
        [--batch 1000] [--skip-console]

One client, sequential, `--batch` records per request, random uuid4 event_ids
and run_ids (as the older tool's clients make them). Both sides are SQLite with
journal DELETE / synchronous FULL, and both are filled to each `--stored` count
with the same records (untimed); then `--measure` records are timed, request by
request, the two sides taking turns, so that the machine's changing load meets
both alike:

- the ceiling: `json.loads` of each request's body, then one `sqlite3`
  `executemany` into the older tool's v7 schema (tests/fixtures/legacy_v7.sql, its
  15 indexes) in one transaction per body: the work any service must do at least;
- the console: `python -m console serve` with its default workers and threads,
  over one keep-alive connection; every answer is checked (201, all inserted).

It prints records/s, the p50 per request, and the console's figure as a ratio of
the ceiling measured in the same stretch.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import sqlite3
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

from common import free_port, start_console, stop_console  # noqa: E402

LEGACY_DDL = ROOT / "tests" / "fixtures" / "legacy_v7.sql"
AGENTS = [f"agent-{i:02d}" for i in range(20)]
STATUSES = ["success"] * 8 + ["failure", "partial"]


def make_bodies(first: int, count: int, batch: int, rng: random.Random, base: datetime | None = None) -> list[bytes]:
    """Request bodies of finished runs `first` to `first + count`, `batch` per body, as the
    older clients post them: one run every 3 seconds from `base` (default 2026-01-01)."""
    base = base or datetime(2026, 1, 1, tzinfo=UTC)
    bodies = []
    for low in range(first, first + count, batch):
        records = []
        for i in range(low, min(first + count, low + batch)):
            start = base + timedelta(seconds=3 * i)
            duration = 500 + rng.randrange(60000)
            records.append({
                "event_id": str(uuid.uuid4()), "run_id": str(uuid.uuid4()), "agent_name": AGENTS[i % 20],
                "job_type": "crawl", "start_time": start.isoformat(),
                "end_time": (start + timedelta(milliseconds=duration)).isoformat(),
                "status": STATUSES[i % 10], "duration_ms": duration,
                "items_discovered": 10, "items_succeeded": 9, "items_failed": 1, "host": "bench",
                "metrics_json": {"pages": i % 50}, "error_summary": None if i % 10 else f"timeout after {i} ms",
            })
        bodies.append(json.dumps(records).encode())
    return bodies


class Ceiling:
    """json.loads + executemany into the v7 schema, one transaction per body."""

    COLUMNS = ("event_id", "run_id", "agent_name", "job_type", "start_time", "end_time", "status", "duration_ms",
               "items_discovered", "items_succeeded", "items_failed", "host", "metrics_json", "error_summary")

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.executescript(LEGACY_DDL.read_text())
        self.conn.execute("PRAGMA journal_mode = DELETE")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.sql = (f"INSERT INTO agent_runs ({', '.join(self.COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(self.COLUMNS))})")

    def post(self, body: bytes) -> None:
        records = json.loads(body)
        params = []
        for r in records:
            values = [r.get(c) for c in self.COLUMNS]
            values[12] = json.dumps(values[12])
            params.append(values)
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(self.sql, params)
        self.conn.execute("COMMIT")


class Console:
    """The real console over one keep-alive connection."""

    def __init__(self, path: Path, tmp: Path) -> None:
        env = {**os.environ, "TELEMETRY_SCHEDULER_ENABLED": "false", "TELEMETRY_LOG_LEVEL": "WARNING",
               "TELEMETRY_SECRET_KEY": "bench", "TELEMETRY_BASE_DIR": str(tmp / "base"),
               "TELEMETRY_DB_PATH": str(path), "TELEMETRY_DB_JOURNAL_MODE": "DELETE",
               "TELEMETRY_DB_SYNCHRONOUS": "FULL", "TELEMETRY_API_PORT": str(free_port())}
        for name in ("TELEMETRY_DATABASE_URL", "TELEMETRY_API_WORKERS", "TELEMETRY_API_THREADS"):
            env.pop(name, None)
        self.proc = start_console(env, tmp / "console.log")
        self.port = int(env["TELEMETRY_API_PORT"])
        self.reconnect()

    def reconnect(self) -> None:
        """A new keep-alive connection: the server closes one left idle while bodies are made."""
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def post(self, body: bytes) -> None:
        self.conn.request("POST", "/api/v1/runs/batch", body=body, headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = response.read()
        answer = json.loads(data) if response.status == 201 else {}
        if answer.get("inserted") != body.count(b'"event_id"'):
            raise SystemExit(f"console answered {response.status}: {data[:300]!r}")

    def close(self) -> None:
        stop_console(self.proc)


def drive(target, bodies: list[bytes]) -> tuple[float, list[float]]:
    """Post every body in turn; (wall seconds, per-request seconds)."""
    latencies = []
    if hasattr(target, "reconnect"):
        target.reconnect()
    started = time.perf_counter()
    for body in bodies:
        before = time.perf_counter()
        target.post(body)
        latencies.append(time.perf_counter() - before)
    return time.perf_counter() - started, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", default="100000,1000000", help="stored runs before each measurement")
    parser.add_argument("--measure", type=int, default=30000, help="records timed at each stored count")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--skip-console", action="store_true", help="the ceiling alone")
    args = parser.parse_args()
    stops = sorted(int(s) for s in args.stored.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    from console.core.settings import load_settings
    from console.store import migrate

    console_file = tmp / "console.sqlite"
    migrate.upgrade(load_settings({"TELEMETRY_DB_PATH": str(console_file)}))
    targets = {"ceiling (json.loads + executemany, v7)": lambda: Ceiling(tmp / "v7.sqlite")}
    if not args.skip_console:
        targets["console (POST /api/v1/runs/batch)"] = lambda: Console(console_file, tmp)
    results: dict[tuple[str, int], tuple[float, float]] = {}
    live = {}
    try:
        for label, make in targets.items():
            live[label] = make()
        stored = 0
        for stop in stops:
            # The same records on both sides: filled (untimed), then timed body by body, the
            # two sides alternating, so that a change in the machine's load meets both alike.
            fill = make_bodies(stored, stop - stored, args.batch, random.Random(stop))
            for label, target in live.items():
                print(f"... {label}: filling to {stop:,}", file=sys.stderr, flush=True)
                drive(target, fill)
            timed = make_bodies(stop, args.measure, args.batch, random.Random(-stop))
            latencies: dict[str, list[float]] = {label: [] for label in live}
            for target in live.values():
                if hasattr(target, "reconnect"):
                    target.reconnect()
            for body in timed:
                for label, target in live.items():
                    before = time.perf_counter()
                    target.post(body)
                    latencies[label].append(time.perf_counter() - before)
            for label, spent in latencies.items():
                results[(label, stop)] = (args.measure / sum(spent), statistics.median(spent) * 1000)
            stored = stop + args.measure
        print(f"\n{args.batch} records per request, one client, uuid4 ids, SQLite DELETE/FULL; {os.cpu_count()} CPUs")
        print(f"{'stored':>9}  {'target':<40} {'records/s':>10} {'p50 ms':>7} {'x ceiling':>9}")
        ceiling_label = next(iter(targets))
        for (label, stop), (rate, p50) in results.items():
            ratio = rate / results[(ceiling_label, stop)][0]
            print(f"{stop:>9}  {label:<40} {rate:>10,.0f} {p50:>7.1f} {ratio:>9.2f}")
    finally:
        for target in live.values():
            if hasattr(target, "close"):
                target.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
