"""The console under candidate servers, side by side in one run (docs/performance.md, "Serving").

    .venv/bin/python scripts/bench/bench_servers.py [--servers console,waitress,gthread]
        [--each 200] [--attack-seconds 20] [--single-runs 3000] [--batch-records 20000] [--rounds 1]

Each candidate serves the same app (`wsgi:app`) on a fresh migrated SQLite file:

- console: `python -m console serve` (gunicorn and console/server/worker.py);
- waitress: waitress (its event loop reads whole requests too), 8 threads,
  `channel_timeout` = the request deadline (waitress has no total deadline);
- gthread: gunicorn's stock gthread worker, the console's settings otherwise.

For each: single POST /api/v1/runs from 8 keep-alive clients (runs/s), batches of
500 from 2 clients (records/s), p99 of /health and single POSTs on new connections
while quiet, then the slow-client attack of scripts/bench/slow_clients.py
(`--each` trickling, idle and deaf connections): probes answered, their p99, RSS
growth, and how long the longest hostile connection of each kind lived.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_api import drive, make_runs, split  # noqa: E402
from common import ROOT, free_port, wait_healthy  # noqa: E402
from slow_clients import attack  # noqa: E402

DEADLINE = 10

WAITRESS = (
    "import sys; from waitress import serve; from wsgi import app; "
    "serve(app, host='127.0.0.1', port=int(sys.argv[1]), threads=8, connection_limit=4000, "
    f"channel_timeout={DEADLINE}, asyncore_use_poll=True, ident='waitress')"
)


def command(server: str, port: int) -> list[str]:
    if server == "console":
        return [sys.executable, "-m", "console", "serve", "--no-upgrade"]
    if server == "waitress":
        return [sys.executable, "-c", WAITRESS, str(port)]
    if server == "gthread":
        return [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "console/server/gunicorn_conf.py"),
                "--worker-class", "gthread", "wsgi:app"]
    raise SystemExit(f"unknown server {server}")


def measure(server: str, args, tmp: Path) -> dict:
    port = free_port()
    env = {**os.environ, "TELEMETRY_DB_PATH": str(tmp / f"{server}.sqlite"), "TELEMETRY_API_PORT": str(port),
           "TELEMETRY_BASE_DIR": str(tmp / f"{server}-base"), "TELEMETRY_SCHEDULER_ENABLED": "false",
           "TELEMETRY_API_REQUEST_DEADLINE": str(DEADLINE), "TELEMETRY_LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "-m", "console", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    proc = subprocess.Popen(command(server, port), cwd=ROOT, env=env, start_new_session=True,
                            stdout=open(tmp / f"{server}.log", "ab"), stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, proc)
        drive(port, "/api/v1/runs", [[json.dumps(r).encode() for r in make_runs(200, seed=99)]], 4, 201)  # warm up
        single = [json.dumps(r).encode() for r in make_runs(args.single_runs, seed=1)]
        single_wall, _ = drive(port, "/api/v1/runs", split(single, 2), 4, 201)
        records = make_runs(args.batch_records, seed=2)
        batches = [json.dumps(records[i:i + 500]).encode() for i in range(0, len(records), 500)]
        batch_wall, _ = drive(port, "/api/v1/runs/batch", split(batches, 2), 1, 201)
        quiet = attack(port, proc.pid, each=0, seconds=5)
        attacked = attack(port, proc.pid, each=args.each, seconds=args.attack_seconds)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    return {
        "server": server,
        "single_runs_per_s": round(len(single) / single_wall),
        "batch_records_per_s": round(len(records) / batch_wall),
        "quiet_p99_ms": round(quiet.p99() * 1000, 1),
        "attack": attacked.summary(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="console,waitress,gthread")
    parser.add_argument("--each", type=int, default=200)
    parser.add_argument("--attack-seconds", type=float, default=20)
    parser.add_argument("--single-runs", type=int, default=3000)
    parser.add_argument("--batch-records", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=1, help="the servers in turn, this many times (the machine drifts)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')} UTC")
    servers = args.servers.split(",")
    results: dict[str, list[dict]] = {server: [] for server in servers}
    for round_number in range(args.rounds):
        for server in servers:
            with tempfile.TemporaryDirectory() as tmp:
                result = measure(server, args, Path(tmp))
            results[server].append(result)
            print(json.dumps({"round": round_number + 1, **result}), flush=True)
    first = servers[0]
    for key in ("single_runs_per_s", "batch_records_per_s"):
        medians = {server: statistics.median(r[key] for r in rounds) for server, rounds in results.items()}
        ratios = ", ".join(f"{server} {value:g} (x{value / medians[first]:.2f})" for server, value in medians.items())
        print(f"{key}, median of {args.rounds}: {ratios}")


if __name__ == "__main__":
    main()
