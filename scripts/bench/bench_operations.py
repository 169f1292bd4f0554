"""Writes to a large database while it is being operated on: ingest rate, retention and backup under load.

    .venv/bin/python scripts/bench/bench_operations.py --db build/bench/10m.sqlite [--phases rate,retention,backup]
    .venv/bin/python scripts/bench/bench_operations.py --database-url postgresql+psycopg://... [...]

Point it at a database filled by seed_runs.py (runs spread evenly over `--days`
days before the seed's end); it starts `python -m console serve` on it with the
default workers and threads, and runs, in order:

- `rate`: two client processes post spool lines to `POST /api/v1/ingest`, 500
  per request (UUID v7 ids, as the SDK sends them), back to back for
  `--seconds`: records/s at this size. With `--compare-db SMALL.sqlite` (a
  small seeded file or PostgreSQL database, e.g. 100,000 runs) the same is done against a second
  console on that file, in `--rounds` alternating rounds, and the ratio
  large ÷ small is printed: the load of the machine meets both alike.
- `retention`: a paced load (4 clients, a request of 50 lines every 250 ms each,
  800 lines/s offered) runs alone for 10 s (the baseline), then while
  `python -m console retention` deletes the oldest `--delete` runs, to the
  nearest whole day (`--days` of the cutoff found from the stored runs); prints
  the load's p50 / p99 / max in both windows, every answer that was not 200,
  and retention's own time.
- `backup`: the same paced load plus 4 real SDK clients (their own spools,
  `TelemetryClient`, a run started and ended every 20 ms each), while
  `python -m console backup` copies the database; then the SDK clients flush,
  and every run they recorded and every line the console acknowledged is looked
  up in the database: none may be missing. API writers may meet 503 with
  Retry-After during the copy; the SDK retries those. The backup file (as large
  as the database) is deleted after the report.

Finally it prints the database's bytes per stored run. It writes to the database
it is given: run it on a copy you can spare (the retention phase deletes runs).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sdk"))

from bench_ingest import make_lines  # noqa: E402
from common import free_port, start_console, stop_console  # noqa: E402

PACED_CLIENTS, PACED_LINES, PACED_EVERY = 4, 50, 0.25


def post_ingest(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, dict]:
    conn.request("POST", "/api/v1/ingest", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    return response.status, (json.loads(data) if response.status == 200 else {"raw": data[:200].decode("latin-1")})


def rate_client(port: int, seconds: float, seed: int, ready, go, queue) -> None:
    """Back-to-back requests of 500 lines for `seconds` after `go`; puts (lines accepted, non-200 answers)."""
    lines = make_lines(100_000, "ended", seed)
    bodies = [json.dumps(lines[at : at + 500]).encode() for at in range(0, len(lines), 500)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    accepted = failed = 0
    ready.put(seed)
    go.wait()
    deadline = time.monotonic() + seconds
    for body in bodies:
        if time.monotonic() > deadline:
            break
        status, answer = post_ingest(conn, body)
        if status == 200:
            accepted += answer["accepted"]
        else:
            failed += 1
    queue.put((accepted, failed))


def compare_rates(large_port: int, small_port: int, seconds: float, rounds: int) -> dict:
    """Alternating rate rounds against the large and the small database; the ratio of their medians."""
    large, small = [], []
    for _ in range(rounds):
        small.append(phase_rate(small_port, seconds)["records_per_s"])
        large.append(phase_rate(large_port, seconds)["records_per_s"])
    return {"large": large, "small": small,
            "ratio": round(statistics.median(large) / max(statistics.median(small), 1), 2)}


def phase_rate(port: int, seconds: float) -> dict:
    ready, go, queue = mp.Queue(), mp.Event(), mp.Queue()
    procs = [mp.Process(target=rate_client, args=(port, seconds, 1000 + i, ready, go, queue)) for i in range(2)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get()
    started = time.perf_counter()
    go.set()
    results = [queue.get() for _ in procs]
    spent = time.perf_counter() - started
    for proc in procs:
        proc.join()
    accepted = sum(r[0] for r in results)
    return {"records_per_s": round(accepted / spent), "non_200": sum(r[1] for r in results), "seconds": round(spent, 1)}


class PacedLoad:
    """PACED_CLIENTS threads, each posting PACED_LINES lines every PACED_EVERY s; every answer is kept."""

    def __init__(self, port: int, seed: int) -> None:
        self.port, self.seed = port, seed
        self.stop = threading.Event()
        self.latencies: list[tuple[float, float]] = []  # (sent at, seconds to answer)
        self.failures: list[str] = []
        self.acknowledged: list[str] = []  # event_ids of lines answered 200 and accepted
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(PACED_CLIENTS)]

    def __enter__(self) -> PacedLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _client(self, index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        next_at = time.monotonic()
        for n in range(10_000_000):
            if self.stop.is_set():
                break
            chunk = make_lines(PACED_LINES, "ended", (self.seed * 100 + index) * 10_000_000 + n)
            before = time.perf_counter()
            try:
                status, answer = post_ingest(conn, json.dumps(chunk).encode())
            except OSError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                continue
            self.latencies.append((before, time.perf_counter() - before))
            if status == 200 and not answer.get("rejected"):
                self.acknowledged += [line["event_id"] for line in chunk]
            else:
                self.failures.append(f"{status}: {answer}")
            next_at += PACED_EVERY
            time.sleep(max(0.0, next_at - time.monotonic()))

    def summary(self, since: float = 0.0, until: float = float("inf")) -> dict:
        """Latencies of the requests sent between `since` and `until` (perf_counter)."""
        ms = sorted(took * 1000 for at, took in self.latencies if since <= at < until)
        if not ms:
            return {"requests": 0}
        return {"requests": len(ms), "p50_ms": round(statistics.median(ms), 1),
                "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 1), "max_ms": round(ms[-1], 1),
                "failures": len(self.failures), "first_failures": self.failures[:3]}


def sdk_client(api_url: str, spool: str, agent: str, stop, queue) -> None:
    """A real SDK client recording a run every 20 ms until `stop`; puts (runs recorded, still pending)."""
    from telemetry import TelemetryClient, TelemetryConfig

    client = TelemetryClient(TelemetryConfig(metrics_dir=Path(spool), api_url=api_url, git_detect=False,
                                             batch_seconds=0.2, max_backoff=2.0))
    runs = 0
    while not stop.is_set():
        run_id = client.start_run(agent, "backup-bench")
        client.end_run(run_id, status="success", items_discovered=1)
        runs += 1
        time.sleep(0.02)
    pending = client.flush(timeout=300)
    client.close()
    queue.put((runs, pending))


def console_cli(env: dict, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "console", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"console {' '.join(args)} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout.strip()


class Store:
    """Direct reads of the database (not through the console) for the checks."""

    def __init__(self, args) -> None:
        import sqlalchemy as sa

        self.sa = sa
        url = args.database_url or f"sqlite:///{args.db}"
        self.engine = sa.create_engine(url)
        self.args = args

    def scalar(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(self.sa.text(sql), params).scalar()

    def missing(self, event_ids: list[str]) -> int:
        found = 0
        for low in range(0, len(event_ids), 500):
            chunk = event_ids[low : low + 500]
            with self.engine.connect() as conn:
                found += conn.execute(self.sa.text("SELECT count(*) FROM agent_runs WHERE event_id IN :ids")
                                      .bindparams(self.sa.bindparam("ids", expanding=True)), {"ids": chunk}).scalar()
        return len(event_ids) - found

    def bytes_per_run(self) -> tuple[int, int]:
        runs = self.scalar("SELECT count(*) FROM agent_runs")
        if self.args.database_url:
            size = self.scalar("SELECT pg_database_size(current_database())")
        else:
            size = Path(self.args.db).stat().st_size
        return size, runs


def cutoff_days(store: Store, delete: int) -> float:
    """Days to keep so that about `delete` of the oldest runs are older (created_at order)."""
    oldest_kept = store.scalar(
        "SELECT created_at FROM agent_runs ORDER BY created_at LIMIT 1 OFFSET :n", n=delete)
    when = oldest_kept if isinstance(oldest_kept, datetime) else datetime.fromisoformat(str(oldest_kept))
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return (datetime.now(UTC) - when) / timedelta(days=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", type=Path, help="a seeded SQLite file (written to)")
    where.add_argument("--database-url", help="a seeded PostgreSQL database (written to)")
    parser.add_argument("--phases", default="rate,retention,backup")
    parser.add_argument("--seconds", type=float, default=30, help="length of the rate phase")
    parser.add_argument("--delete", type=int, default=1_000_000, help="runs the retention phase deletes")
    parser.add_argument("--journal", default="DELETE", help="TELEMETRY_DB_JOURNAL_MODE (SQLite)")
    parser.add_argument("--compare-db", help="a small seeded SQLite file or PostgreSQL URL for the rate ratio "
                                             "(written to)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rate rounds with --compare-db")
    args = parser.parse_args()
    phases = args.phases.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ops-"))
    port = free_port()
    env = {**os.environ, "TELEMETRY_API_PORT": str(port), "TELEMETRY_SCHEDULER_ENABLED": "false",
           "TELEMETRY_LOG_LEVEL": "WARNING", "TELEMETRY_SECRET_KEY": "bench", "TELEMETRY_BASE_DIR": str(tmp / "base"),
           "TELEMETRY_BACKUP_DIR": str(tmp / "backups"), "TELEMETRY_DB_MMAP_BYTES": str(1 << 30)}
    for name in ("TELEMETRY_API_WORKERS", "TELEMETRY_API_THREADS", "TELEMETRY_DB_PATH", "TELEMETRY_DATABASE_URL"):
        env.pop(name, None)
    if args.db:
        env.update(TELEMETRY_DB_PATH=str(args.db), TELEMETRY_DB_JOURNAL_MODE=args.journal)
    else:
        env["TELEMETRY_DATABASE_URL"] = args.database_url
    store = Store(args)
    size, runs = store.bytes_per_run()
    print(f"{runs:,} runs stored, {size / 1e9:.2f} GB: {size / max(runs, 1):,.0f} bytes per run", flush=True)
    days = cutoff_days(store, args.delete) if "retention" in phases else 0
    proc = start_console(env, tmp / "console.log")
    try:
        if "rate" in phases and args.compare_db:
            small_port = free_port()
            small_env = {**env, "TELEMETRY_API_PORT": str(small_port)}
            small_env.pop("TELEMETRY_DB_PATH", None)
            small_env.pop("TELEMETRY_DATABASE_URL", None)
            small_env["TELEMETRY_DATABASE_URL" if args.compare_db.startswith("postgresql") else "TELEMETRY_DB_PATH"] = \
                args.compare_db
            small = start_console(small_env, tmp / "console-small.log")
            try:
                print("rate (records/s, this database vs --compare-db):",
                      compare_rates(port, small_port, args.seconds, args.rounds), flush=True)
            finally:
                stop_console(small)
        elif "rate" in phases:
            print("rate:", phase_rate(port, args.seconds), flush=True)
        if "retention" in phases:
            with PacedLoad(port, seed=7) as load:
                time.sleep(10)
                started = time.perf_counter()
                took, out = console_cli(env, "retention", "--days", str(round(days)))
                ended = time.perf_counter()
                time.sleep(3)
            report = json.loads(out)
            print(f"retention: {took:.0f} s, {report['runs_deleted']:,} runs deleted in {report['batches']} "
                  f"transactions, the longest {report['longest_batch_seconds']} s", flush=True)
            print("  ingest before (baseline):", load.summary(until=started), flush=True)
            print("  ingest during retention:", load.summary(started, ended), flush=True)
            print("  acknowledged lines missing:", store.missing(load.acknowledged), flush=True)
        if "backup" in phases:
            stop, queue = mp.Event(), mp.Queue()
            api_url = f"http://127.0.0.1:{port}"
            agents = [f"sdk-backup-{os.getpid()}-{i}" for i in range(4)]
            sdks = [mp.Process(target=sdk_client, args=(api_url, str(tmp / f"spool-{i}"), agent, stop, queue))
                    for i, agent in enumerate(agents)]
            for sdk in sdks:
                sdk.start()
            with PacedLoad(port, seed=8) as load:
                time.sleep(3)
                took, out = console_cli(env, "backup", "--dir", str(tmp / "backups"))
                time.sleep(3)
                stop.set()
                results = [queue.get(timeout=600) for _ in sdks]
            for sdk in sdks:
                sdk.join()
            recorded = sum(r[0] for r in results)
            stored = sum(store.scalar("SELECT count(*) FROM agent_runs WHERE agent_name = :a AND status = 'success'",
                                      a=agent) for agent in agents)
            print(f"backup: {took:.0f} s: {out}", flush=True)
            shutil.rmtree(tmp / "backups", ignore_errors=True)
            print("  ingest meanwhile:", load.summary(), flush=True)
            print("  acknowledged lines missing:", store.missing(load.acknowledged), flush=True)
            print(f"  SDK runs recorded {recorded:,}, stored {stored:,}, pending after flush "
                  f"{sum(r[1] for r in results)}", flush=True)
    finally:
        stop_console(proc)
    size, runs = store.bytes_per_run()
    print(f"after: {runs:,} runs, {size / 1e9:.2f} GB: {size / max(runs, 1):,.0f} bytes per run", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
