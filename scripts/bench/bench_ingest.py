"""Benchmark POST /api/v1/ingest against the real `python -m console serve`.

    .venv/bin/python scripts/bench/bench_ingest.py [--records 100000] [--batch 500]
        [--clients 4] [--workers 1,2] [--journal DELETE] [--synchronous FULL] [--database-url URL]
        [--ids uuid7|uuid4]

For each worker count it starts a fresh console on a new SQLite file (or a
PostgreSQL database given by --database-url, emptied first), sends spool lines in
batches from several client processes over keep-alive http.client connections
(bodies prepared before the clock starts, so the client measures little but
itself), and prints records/s with the client processes' own CPU seconds. In the
same run it measures the baseline: raw sqlite3 executemany of the same rows into
a migrated file (full schema: indexes, the search index and the dirty-hour
triggers), as the console writes and as another tool would, and into a file
without its triggers. The rollups are on (they always are). Ids are UUID v7 as
our SDK writes them unless `--ids uuid4` (random, as many other clients send).
The `x raw` column divides each figure by the baseline into the file without its
triggers (the issue's "raw sqlite3 executemany into a table with these indexes"),
so that figures from machines of different speed can be compared.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from common import ID_KINDS, empty_postgres, free_port, wait_healthy  # noqa: E402

AGENTS = [f"agent-{i:02d}" for i in range(20)]
STATUSES = ["success"] * 8 + ["failure", "partial"]


def make_lines(count: int, scenario: str, seed: int, ids: str = "uuid7") -> list[dict]:
    """Spool lines: `ended` = one run_ended per run; `pair` = run_started + run_ended per run."""
    new_id = ID_KINDS[ids]
    base = datetime(2026, 1, 12, tzinfo=UTC) - timedelta(days=seed % 30)
    lines = []
    per_run = 2 if scenario == "pair" else 1
    for i in range(count // per_run):
        event_id = new_id()
        start = base + timedelta(seconds=7 * i)
        head = {
            "event_id": event_id,
            "run_id": f"run-{seed}-{i}",
            "agent_name": AGENTS[i % len(AGENTS)],
            "job_type": "crawl",
            "start_time": start.isoformat(),
        }
        if scenario == "pair":
            lines.append(
                {
                    "v": 1,
                    "id": new_id(),
                    "kind": "run_started",
                    "ts": start.isoformat(),
                    **head,
                    "data": {"status": "running", "host": "bench", "trigger_type": "cli"},
                }
            )
        end = start + timedelta(milliseconds=500 + (i * 37) % 60000)
        lines.append(
            {
                "v": 1,
                "id": new_id(),
                "kind": "run_ended",
                "ts": end.isoformat(),
                **head,
                "data": {
                    "status": STATUSES[i % len(STATUSES)],
                    "end_time": end.isoformat(),
                    "duration_ms": int((end - start).total_seconds() * 1000),
                    "items_discovered": 10,
                    "items_succeeded": 9,
                    "items_failed": 1,
                    "host": "bench",
                    "error_summary": None if i % 10 else f"error {i} in step {i % 7}",
                },
            }
        )
    return lines


def client_worker(port: int, bodies: list[bytes], queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    start_cpu = time.process_time()
    accepted = 0
    for body in bodies:
        conn.request("POST", "/api/v1/ingest", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"ingest answered {response.status}: {data[:300]!r}")
        accepted += json.loads(data)["accepted"]
    queue.put((accepted, time.process_time() - start_cpu))


def run_console(args, workers: int, scenario: str, workdir: Path) -> dict:
    port = free_port()
    env = {
        **os.environ,
        "TELEMETRY_API_PORT": str(port),
        "TELEMETRY_API_WORKERS": str(workers),
        "TELEMETRY_SCHEDULER_ENABLED": "false",
        "TELEMETRY_LOG_LEVEL": "WARNING",
        "TELEMETRY_DB_JOURNAL_MODE": args.journal,
        "TELEMETRY_DB_SYNCHRONOUS": args.synchronous,
        "TELEMETRY_BASE_DIR": str(workdir / f"base-{workers}-{scenario}"),
    }
    if args.database_url:
        env["TELEMETRY_DATABASE_URL"] = args.database_url
        from console.core.settings import load_settings
        from console.store import migrate

        migrate.upgrade(load_settings({"TELEMETRY_DATABASE_URL": args.database_url}))
        empty_postgres(
            args.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
            if args.database_url.startswith("postgresql://")
            else args.database_url
        )
    else:
        env["TELEMETRY_DB_PATH"] = str(workdir / f"ingest-{workers}-{scenario}.sqlite")
    log = open(workdir / f"console-{workers}-{scenario}.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "console", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_healthy(port, proc)
        per_client = args.records // args.clients
        bodies = []
        for c in range(args.clients):
            lines = make_lines(per_client, scenario, seed=c + 100 * workers, ids=args.ids)
            bodies.append([json.dumps(lines[i : i + args.batch]).encode() for i in range(0, len(lines), args.batch)])
        # Warm up (connections, imports, first statements) with a small batch per worker.
        warm = make_lines(20, scenario, seed=999)
        for _ in range(workers * 2):
            conn = http.client.HTTPConnection("127.0.0.1", port)
            conn.request("POST", "/api/v1/ingest", body=json.dumps(warm), headers={"Content-Type": "application/json"})
            conn.getresponse().read()
        queue = mp.Queue()
        procs = [mp.Process(target=client_worker, args=(port, b, queue)) for b in bodies]
        started = time.perf_counter()
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        elapsed = time.perf_counter() - started
        for p in procs:
            p.join()
        accepted = sum(r[0] for r in results)
        client_cpu = sum(r[1] for r in results)
        return {
            "what": f"console /api/v1/ingest, {workers} worker(s), {scenario}",
            "records": accepted,
            "seconds": elapsed,
            "rate": accepted / elapsed,
            "client_cpu": client_cpu,
        }
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


_REFERENCE = "full schema without its triggers"  # the baseline the `x raw` column divides by


def raw_baseline(args, workdir: Path, template: Path, keep_triggers: bool, as_console: bool = False) -> dict:
    """sqlite3 executemany of the same rows, 500 per transaction, into a migrated file.

    `as_console`: with the console's own connection settings (temp_store=MEMORY),
    its guard row, and the search indexing of each batch; else as another tool
    writing the file would (its rows are indexed later, by the console).
    """
    path = workdir / f"raw-{keep_triggers}-{as_console}.sqlite"
    shutil.copy(template, path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode = {args.journal}")
    conn.execute(f"PRAGMA synchronous = {args.synchronous}")
    if as_console:
        conn.execute("PRAGMA temp_store = MEMORY")
    if not keep_triggers:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
    lines = make_lines(args.records, "ended", seed=7, ids=args.ids)
    columns = (
        "event_id",
        "run_id",
        "agent_name",
        "job_type",
        "start_time",
        "end_time",
        "created_at",
        "updated_at",
        "status",
        "duration_ms",
        "items_discovered",
        "items_succeeded",
        "items_failed",
        "host",
        "error_summary",
        "last_seen_at",
    )
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    rows = [
        (
            x["event_id"],
            x["run_id"],
            x["agent_name"],
            x["job_type"],
            x["start_time"],
            x["data"]["end_time"],
            now,
            now,
            x["data"]["status"],
            x["data"]["duration_ms"],
            10,
            9,
            1,
            "bench",
            x["data"]["error_summary"],
            x["start_time"],
        )
        for x in lines
    ]
    sql = f"INSERT INTO agent_runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    started = time.perf_counter()
    for i in range(0, len(rows), args.batch):
        conn.execute("BEGIN IMMEDIATE")
        if as_console:
            conn.execute("INSERT INTO rollup_guard (id) VALUES (1)")
        conn.executemany(sql, rows[i : i + args.batch])
        if as_console:
            # As console/store/watermark.py does: index the batch with one statement.
            conn.execute(
                "INSERT INTO runs_search (rowid, run_id, error_summary) SELECT id, run_id, error_summary "
                "FROM agent_runs WHERE id > (SELECT through_id FROM run_watermark)"
            )
            conn.execute("UPDATE run_watermark SET through_id = (SELECT max(id) FROM agent_runs)")
            conn.execute("DELETE FROM rollup_guard")
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    if not keep_triggers:
        label = _REFERENCE
    elif as_console:
        label = "full schema, console's pragmas + guard row"
    else:
        label = "full schema, as another tool writes it"
    return {
        "what": f"baseline: raw sqlite3 executemany, {label}",
        "records": len(rows),
        "seconds": elapsed,
        "rate": len(rows) / elapsed,
        "client_cpu": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--scenarios", default="ended,pair")
    parser.add_argument("--journal", default="DELETE")
    parser.add_argument("--synchronous", default="FULL")
    parser.add_argument("--database-url", default=None, help="benchmark PostgreSQL instead of SQLite")
    parser.add_argument("--pgserver", action="store_true",
                        help="benchmark PostgreSQL on a throw-away server from the pgserver package")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--ids", choices=sorted(ID_KINDS), default="uuid7",
                        help="event_id and line id: uuid7 as our SDK writes them, or random uuid4")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    results = []
    server = None
    if args.pgserver:
        import pgserver

        server = pgserver.get_server(workdir / "pg", cleanup_mode="stop")
        args.database_url = server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        if not args.no_baseline and not args.database_url:
            from console.core.settings import load_settings
            from console.store import migrate

            template = workdir / "template.sqlite"
            migrate.upgrade(load_settings({"TELEMETRY_DB_PATH": str(template)}))
            results.append(raw_baseline(args, workdir, template, keep_triggers=False))
            results.append(raw_baseline(args, workdir, template, keep_triggers=True))
            results.append(raw_baseline(args, workdir, template, keep_triggers=True, as_console=True))
        for workers in (int(w) for w in args.workers.split(",")):
            for scenario in args.scenarios.split(","):
                results.append(run_console(args, workers, scenario, workdir))
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)

    backend = "PostgreSQL" if args.database_url else f"SQLite journal={args.journal} synchronous={args.synchronous}"
    print(
        f"\n{backend}; {args.records} records ({args.ids} ids), {args.batch} per request, {args.clients} client processes; "
        f"{os.cpu_count()} CPUs"
    )
    reference = next((r["rate"] for r in results if r["what"].endswith(_REFERENCE)), None)
    print(f"{'what':<72} {'records':>8} {'s':>7} {'records/s':>10} {'x raw':>6} {'client CPU s':>13}")
    for r in results:
        cpu = f"{r['client_cpu']:.2f}" if r["client_cpu"] is not None else "-"
        ratio = f"{r['rate'] / reference:.2f}" if reference else "-"
        print(f"{r['what']:<72} {r['records']:>8} {r['seconds']:>7.2f} {r['rate']:>10.0f} {ratio:>6} {cpu:>13}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"(bench driver CPU incl. body preparation: {usage.ru_utime + usage.ru_stime:.1f} s)")


if __name__ == "__main__":
    main()
