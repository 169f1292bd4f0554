"""Benchmark POST /api/v1/runs (single, concurrent) and /api/v1/runs/batch against the real console.

    .venv/bin/python scripts/bench/bench_api.py [--workers 1,2] [--backends sqlite,postgresql]
        [--single-runs 6000] [--single-clients 8] [--batch-records 60000] [--batch 500] [--batch-clients 2]

For each backend and worker count it starts a fresh `python -m console serve`
(SQLite with journal DELETE / synchronous FULL, or a throw-away PostgreSQL from
`pgserver`, or --database-url), drives it from client processes over keep-alive
http.client connections (bodies prepared before the clock starts), checks every
answer (201 created), and prints records/s with the clients' own CPU seconds.
In the same run it measures the baseline: raw sqlite3 executemany of the same
rows into a migrated file (same schema, indexes and triggers), in transactions of
`--batch` rows and of one row (one commit each). The `x raw` column divides each
SQLite figure by its baseline from this run (batches by the `--batch`-row
transactions, single POSTs by the one-row ones), so that figures from machines of
different speed can be compared.

`--wrk SECONDS` (needs Debian's `wrk`): the single POSTs once more, for that long,
from `wrk` (2 threads, the same number of keep-alive connections) with
wrk_single_post.lua, which posts a new run per request and counts the answers
that were not 201. wrk spends about a quarter of the CPU per request that the
Python clients do, so the two figures side by side show how much the client takes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from common import ID_KINDS, free_port, start_console, stop_console  # noqa: E402

AGENTS = [f"agent-{i:02d}" for i in range(20)]
STATUSES = ["success"] * 8 + ["failure", "partial"]


def make_runs(count: int, seed: int, ids: str = "uuid7") -> list[dict]:
    """Finished run records as an agent posts them."""
    new_id = ID_KINDS[ids]
    base = datetime(2026, 1, 12, tzinfo=UTC) - timedelta(days=seed % 30)
    runs = []
    for i in range(count):
        start = base + timedelta(seconds=7 * i)
        end = start + timedelta(milliseconds=500 + (i * 37) % 60000)
        runs.append({
            "event_id": new_id(), "run_id": f"run-{seed}-{i}", "agent_name": AGENTS[i % len(AGENTS)],
            "job_type": "crawl", "start_time": start.isoformat(), "end_time": end.isoformat(),
            "status": STATUSES[i % len(STATUSES)], "duration_ms": int((end - start).total_seconds() * 1000),
            "items_discovered": 10, "items_succeeded": 9, "items_failed": 1, "host": "bench",
            "metrics_json": {"pages": i % 50}, "error_summary": None if i % 10 else f"error {i}",
        })
    return runs


def client_worker(port: int, path: str, bodies: list[bytes], expect: int, queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    start_cpu = time.process_time()
    for body in bodies:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != expect:
            queue.put(("error", f"{path} answered {response.status}: {data[:300]!r}"))
            return
    queue.put(("ok", time.process_time() - start_cpu))


def thread_client(port: int, path: str, bodies: list[bytes], threads: int, expect: int, queue) -> None:
    """One client process with `threads` connections (for many concurrent single POSTs)."""
    import threading

    inner: list = []
    lock = threading.Lock()

    def run(chunk):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for body in chunk:
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            if response.status != expect:
                with lock:
                    inner.append(f"{path} answered {response.status}: {data[:300]!r}")
                return

    start_cpu = time.process_time()
    workers = [threading.Thread(target=run, args=(bodies[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if inner:
        queue.put(("error", inner[0]))
    else:
        queue.put(("ok", time.process_time() - start_cpu))


def drive(port: int, path: str, per_process: list[list[bytes]], threads: int, expect: int) -> tuple[float, float]:
    """Send everything; (wall seconds, client CPU seconds)."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    if threads == 1:
        procs = [ctx.Process(target=client_worker, args=(port, path, b, expect, queue)) for b in per_process]
    else:
        procs = [ctx.Process(target=thread_client, args=(port, path, b, threads, expect, queue)) for b in per_process]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    wall = time.perf_counter() - started
    for proc in procs:
        proc.join()
    errors = [r[1] for r in results if r[0] == "error"]
    if errors:
        raise SystemExit(errors[0])
    return wall, sum(r[1] for r in results)


def drive_wrk(port: int, connections: int, seconds: float) -> tuple[int, float, float]:
    """wrk posting new runs for `seconds`; (requests, wall seconds, wrk's CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "-s", str(HERE / "wrk_single_post.lua"),
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    refused = re.search(r"not created: (\d+)", out)
    if done is None or refused is None:
        raise SystemExit(f"wrk printed no summary:\n{out}")
    if int(refused.group(1)):
        raise SystemExit(f"wrk: {refused.group(1)} answers were not 201")
    wall = float(done.group(2)) / (1000 if done.group(3) == "ms" else 1)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return int(done.group(1)), wall, cpu


def split(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(parts)]


def bench_console(label: str, env: dict[str, str], args, log: Path) -> list[tuple]:
    rows = []
    proc = start_console(env, log)
    port = int(env["TELEMETRY_API_PORT"])
    try:
        # Warm up (imports, connections, the writer thread).
        warm = [json.dumps(r).encode() for r in make_runs(200, seed=99)]
        drive(port, "/api/v1/runs", [warm], 4, 201)

        if "single" not in args.scenarios:
            single = []
        else:
            single = [json.dumps(r).encode() for r in make_runs(args.single_runs, seed=1, ids=args.ids)]
        if single:
            processes = max(1, args.single_clients // args.threads_per_process)
            wall, cpu = drive(port, "/api/v1/runs", split(single, processes), args.threads_per_process, 201)
            rows.append((label, f"POST /runs x{args.single_clients} clients", len(single), wall, cpu, "single"))
            if args.wrk:
                count, wall, cpu = drive_wrk(port, args.single_clients, args.wrk)
                rows.append((label, f"POST /runs x{args.single_clients} clients (wrk)", count, wall, cpu, "single"))
        if "batch" not in args.scenarios:
            return rows

        records = make_runs(args.batch_records, seed=2, ids=args.ids)
        bodies = [json.dumps(records[i:i + args.batch]).encode() for i in range(0, len(records), args.batch)]
        wall, cpu = drive(port, "/api/v1/runs/batch", split(bodies, args.batch_clients), 1, 201)
        rows.append((label, f"POST /runs/batch {args.batch}/req x{args.batch_clients}", len(records), wall, cpu, "batch"))
    finally:
        stop_console(proc)
    return rows


def baseline(template: Path, tmp: Path, args) -> list[tuple]:
    """Raw sqlite3 executemany into the same schema, DELETE/FULL."""
    from console.domain.records import run_values
    from console.domain.validation import RunCreate

    out = []
    for kind, per_txn, count in (("batch", args.batch, args.batch_records), ("single", 1, min(args.single_runs, 2000))):
        path = tmp / f"baseline-{per_txn}.sqlite"
        shutil.copy(template, path)
        rows = []
        for record in make_runs(count, seed=3, ids=args.ids):
            values = run_values(RunCreate.model_validate(record))
            rows.append({k: (v.isoformat() if isinstance(v, datetime) else
                             json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in values.items()})
        columns = list(rows[0])
        sql = f"INSERT INTO agent_runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        params = [tuple(r[c] for c in columns) for r in rows]
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA synchronous = FULL")
        started = time.perf_counter()
        for i in range(0, len(params), per_txn):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, params[i:i + per_txn])
            conn.execute("COMMIT")
        wall = time.perf_counter() - started
        conn.close()
        out.append(("sqlite3 baseline", f"executemany, {per_txn} rows/transaction", len(params), wall, 0.0, kind))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--database-url", default="", help="PostgreSQL to use instead of a pgserver one")
    parser.add_argument("--single-runs", type=int, default=6000)
    parser.add_argument("--single-clients", type=int, default=8)
    parser.add_argument("--threads-per-process", type=int, default=4)
    parser.add_argument("--batch-records", type=int, default=60000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batch-clients", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="TELEMETRY_API_THREADS")
    parser.add_argument("--scenarios", default="single,batch")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--wrk", type=float, default=0, metavar="SECONDS",
                        help="also drive the single POSTs from wrk for this long")
    parser.add_argument("--ids", choices=sorted(ID_KINDS), default="uuid7",
                        help="event_id: uuid7 as our SDK writes it, or random uuid4")
    args = parser.parse_args()

    from console.core.settings import load_settings
    from console.store import migrate

    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    template = tmp / "template.sqlite"
    migrate.upgrade(load_settings({"TELEMETRY_DB_PATH": str(template)}))
    results = [] if args.no_baseline else baseline(template, tmp, args)

    pg_server = None
    base_env = {**os.environ, "TELEMETRY_SCHEDULER_ENABLED": "false", "TELEMETRY_LOG_LEVEL": "WARNING",
                "TELEMETRY_API_THREADS": str(args.threads), "TELEMETRY_SECRET_KEY": "bench",
                "TELEMETRY_BASE_DIR": str(tmp / "base")}
    for name in ("TELEMETRY_DB_PATH", "TELEMETRY_DATABASE_URL"):
        base_env.pop(name, None)
    for backend in args.backends.split(","):
        for workers in [int(w) for w in args.workers.split(",")]:
            env = {**base_env, "TELEMETRY_API_WORKERS": str(workers), "TELEMETRY_API_PORT": str(free_port())}
            if backend == "sqlite":
                db = tmp / f"console-{workers}.sqlite"
                shutil.copy(template, db)
                env.update(TELEMETRY_DB_PATH=str(db), TELEMETRY_DB_JOURNAL_MODE="DELETE",
                           TELEMETRY_DB_SYNCHRONOUS="FULL")
                label = f"sqlite DELETE/FULL, {workers} worker(s)"
            else:
                url = args.database_url
                if not url:
                    if pg_server is None:
                        import pgserver

                        pg_server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
                    url = pg_server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
                url = fresh_pg_database(url, f"bench_{workers}_{uuid.uuid4().hex[:6]}")
                env["TELEMETRY_DATABASE_URL"] = url
                label = f"postgresql, {workers} worker(s)"
            print(f"... {label}", file=sys.stderr, flush=True)
            results += bench_console(label, env, args, tmp / f"console-{backend}-{workers}.log")
    if pg_server is not None:
        pg_server.cleanup()

    print(f"\nevent_id: {args.ids}; {os.cpu_count()} CPUs")
    raw = {kind: count / wall for label, _, count, wall, _, kind in results if label == "sqlite3 baseline"}
    print(f"{'setup':<34} {'scenario':<36} {'records':>8} {'seconds':>8} {'records/s':>10} {'x raw':>6} {'client CPU s':>12}")
    for label, scenario, count, wall, cpu, kind in results:
        ratio = f"{count / wall / raw[kind]:.2f}" if kind in raw and label.startswith("sqlite") else "-"
        print(f"{label:<34} {scenario:<36} {count:>8} {wall:>8.2f} {count / wall:>10.0f} {ratio:>6} {cpu:>12.2f}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def fresh_pg_database(admin_url: str, name: str) -> str:
    import sqlalchemy as sa

    from console.core.settings import load_settings
    from console.store import migrate

    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(load_settings({"TELEMETRY_DATABASE_URL": url}))
    return url


if __name__ == "__main__":
    raise SystemExit(main())
