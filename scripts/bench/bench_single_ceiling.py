"""How fast can single POSTs go here at all? The ceiling of the gunicorn worker, beside the console.

    .venv/bin/python scripts/bench/bench_single_ceiling.py [--requests 6000] [--commit-ms 2] [--db SEEDED.sqlite]

Drives, with the same 8 keep-alive clients as bench_api.py (2 processes x 4
threads), five servers in turn and prints requests/s with the CPU each side
spends per request and the server's context switches per request:

- `handoff_app` under gunicorn gthread (1 worker, 8 threads): a WSGI app that
  does no work of its own but reads the body and waits, as the console does, for
  a writer thread that releases the waiting requests in groups after a simulated
  commit (`--commit-ms`, a sleep). This is the ceiling of the server model with
  a free application.
- the same with gunicorn's access log on (the console logs every request);
- the same under the console's own worker (console/server/worker.py: gthread, but a
  thread keeps serving its keep-alive connection);
- the same with the console's access logger (console/server/access_log.py);
- the console itself (`python -m console serve`, 1 worker, SQLite DELETE/FULL),
  on a fresh file and, with `--db`, on a seeded one (seed_runs.py).

Each row's `x free app` divides it by the free app under the console's worker with
its access log (the console's own server doing no work), and the disk's bound is
printed beside: raw `sqlite3` one-row transactions into the same migrated schema.

Then, in this process, the console's request path with the commit stubbed out
(Flask, validation, the answer): its CPU per request back to back, and with a
pause of one commit between requests, as a request thread lives under load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench_api import drive, make_runs, split  # noqa: E402
from common import free_port, start_console, stop_console  # noqa: E402

# ---------------------------------------------------------------- the free application

_cond = threading.Condition()
_pending: list[threading.Lock] = []
_writer: list[threading.Thread] = []


def _write_groups() -> None:
    commit_seconds = float(os.environ.get("CEILING_COMMIT_MS", "2")) / 1000
    while True:
        with _cond:
            while not _pending:
                _cond.wait()
            deadline = time.monotonic() + commit_seconds
            while len(_pending) < 8 and time.monotonic() < deadline:
                _cond.wait(deadline - time.monotonic())
            group = _pending[:]
            del _pending[:]
        time.sleep(commit_seconds)
        for waiter in group:
            waiter.release()


def handoff_app(environ, start_response):
    """Read the body, hand a waiter to the writer thread, answer 201 once it is released."""
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    waiter = threading.Lock()
    waiter.acquire()
    with _cond:
        if not _writer:
            _writer.append(threading.Thread(target=_write_groups, daemon=True))
            _writer[0].start()
        _pending.append(waiter)
        _cond.notify()
    waiter.acquire()
    body = b'{"status":"created"}'
    start_response("201 Created", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


# ---------------------------------------------------------------- measuring


def _children(pid: int) -> list[str]:
    return subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()


def _cpu_and_switches(pids: list[str]) -> tuple[float, int]:
    ticks, switches = 0, 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
        ticks += int(fields[11]) + int(fields[12])
        for task in os.listdir(f"/proc/{pid}/task"):
            for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                if "ctxt_switches" in line:
                    switches += int(line.split()[1])
    return ticks / os.sysconf("SC_CLK_TCK"), switches


def measure(port: int, server_pid: int, path: str, count: int) -> tuple[float, float, float, float]:
    """(requests/s, server CPU µs/request, client CPU µs/request, server context switches/request)."""
    drive(port, path, [[json.dumps(r).encode() for r in make_runs(300, seed=98)]], 4, 201)  # warm up
    workers = _children(server_pid)
    cpu0, switches0 = _cpu_and_switches(workers)
    bodies = [json.dumps(r).encode() for r in make_runs(count, seed=7)]
    wall, client_cpu = drive(port, path, split(bodies, 2), 4, 201)
    cpu1, switches1 = _cpu_and_switches(workers)
    return count / wall, (cpu1 - cpu0) / count * 1e6, client_cpu / count * 1e6, (switches1 - switches0) / count


WORKERS = {"gthread": "gthread", "console's worker": "console.server.worker.ConsoleThreadWorker"}


def handoff_server(access_log: str, commit_ms: float, worker: str) -> tuple[subprocess.Popen, int]:
    """`access_log`: "" (none), "gunicorn's" or "the console's" (console/server/access_log.py)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        WORKERS[worker],
        "--threads",
        "8",
        "-w",
        "1",
        "-b",
        f"127.0.0.1:{port}",
        "--chdir",
        str(HERE),
        "bench_single_ceiling:handoff_app",
    ]
    if access_log:
        argv[3:3] = ["--access-logfile", os.devnull]
    if access_log == "the console's":
        argv[3:3] = ["--logger-class", "console.server.access_log.TextAccessLogger"]
    env = {**os.environ, "CEILING_COMMIT_MS": str(commit_ms), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while not _children(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    return proc, port


def request_path_cpu(tmp: Path, pause: float, count: int = 2000) -> float:
    """CPU µs of one request through the console's app with the commit stubbed, `pause` s apart."""
    from werkzeug.test import EnvironBuilder

    from console.app import create_app
    from console.core.settings import load_settings
    from console.domain import group_commit
    from console.store import migrate

    settings = load_settings(
        {
            "TELEMETRY_DB_PATH": str(tmp / "inproc.sqlite"),
            "TELEMETRY_BASE_DIR": str(tmp),
            "TELEMETRY_SECRET_KEY": "bench",
            "TELEMETRY_LOG_LEVEL": "WARNING",
        }
    )
    migrate.upgrade(settings)
    app = create_app(settings)
    group_commit.GroupCommit.insert = lambda self, row, arrived=False: True  # no commit: the request path only
    environs = [
        EnvironBuilder(
            path="/api/v1/runs", method="POST", data=json.dumps(r), headers={"Content-Type": "application/json"}
        ).get_environ()
        for r in make_runs(count + 300, seed=5)
    ]

    def answer(*_):
        return None

    for environ in environs[:300]:
        b"".join(app(environ, answer))
    started = time.thread_time()
    for environ in environs[300:]:
        b"".join(app(environ, answer))
        if pause:
            time.sleep(pause)
    return (time.thread_time() - started) / count * 1e6


def raw_one_row_commits(template: Path, count: int = 500) -> float:
    """The disk's bound: raw sqlite3 one-row transactions (DELETE / FULL) into a copy of the migrated file, per second."""
    import shutil

    from console.domain.records import run_values
    from console.domain.validation import RunCreate
    from console.store.runstore import driver_rows

    path = template.with_name("raw-one-row.sqlite")
    shutil.copy(template, path)
    rows = [run_values(RunCreate.model_validate(r)) for r in make_runs(count, seed=11)]
    columns = list(rows[0])
    params = driver_rows(rows, columns)
    sql = f"INSERT INTO agent_runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA synchronous = FULL")
    started = time.perf_counter()
    for row in params:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, row)
        conn.execute("COMMIT")
    wall = time.perf_counter() - started
    conn.close()
    return count / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--commit-ms", type=float, default=2.0, help="the simulated commit of the free application")
    parser.add_argument("--db", type=Path, help="also on this seeded SQLite file (a copy you can spare: runs are added)")
    args = parser.parse_args()

    rows = []
    servers = (("gthread", ""), ("gthread", "gunicorn's"), ("console's worker", "gunicorn's"),
               ("console's worker", "the console's"))
    for worker, access_log in servers:
        proc, port = handoff_server(access_log, args.commit_ms, worker)
        try:
            label = f"{worker}, free app, {args.commit_ms:g} ms commit" + (f", {access_log} access log" if access_log else "")
            rows.append((label, *measure(port, proc.pid, "/", args.requests)))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)

    from console.core.settings import load_settings
    from console.store import migrate

    tmp = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    db = tmp / "console.sqlite"
    migrate.upgrade(load_settings({"TELEMETRY_DB_PATH": str(db)}))
    raw = raw_one_row_commits(db)
    env = {
        **os.environ,
        "TELEMETRY_SCHEDULER_ENABLED": "false",
        "TELEMETRY_LOG_LEVEL": "WARNING",
        "TELEMETRY_API_THREADS": "8",
        "TELEMETRY_API_WORKERS": "1",
        "TELEMETRY_SECRET_KEY": "bench",
        "TELEMETRY_BASE_DIR": str(tmp / "base"),
        "TELEMETRY_API_PORT": str(free_port()),
        "TELEMETRY_DB_PATH": str(db),
        "TELEMETRY_DB_JOURNAL_MODE": "DELETE",
        "TELEMETRY_DB_SYNCHRONOUS": "FULL",
    }
    env.pop("TELEMETRY_DATABASE_URL", None)
    consoles = [("console, 1 worker, SQLite DELETE/FULL", db)]
    if args.db:
        counting = sqlite3.connect(args.db)
        stored = counting.execute("SELECT count(*) FROM agent_runs").fetchone()[0]
        counting.close()
        migrate.upgrade(load_settings({"TELEMETRY_DB_PATH": str(args.db)}))
        consoles.append((f"the same, on {stored:,} runs stored", args.db))
    for label, path in consoles:
        env["TELEMETRY_DB_PATH"], env["TELEMETRY_API_PORT"] = str(path), str(free_port())
        proc = start_console(env, tmp / "console.log")
        try:
            rows.append((label, *measure(int(env["TELEMETRY_API_PORT"]), proc.pid, "/api/v1/runs", args.requests)))
        finally:
            stop_console(proc)

    print(f"\n8 keep-alive clients, {args.requests} single POSTs per server; {os.cpu_count()} CPUs")
    # The console's own server: its worker with its access log, around an app that does nothing.
    free = next(rate for label, rate, *_ in rows if "console's worker" in label and "the console's" in label)
    print(f"{'server':68} {'req/s':>7} {'x free app':>10} {'server CPU us/req':>18} {'client CPU us/req':>18} "
          f"{'switches/req':>13}")
    for label, rate, server_cpu, client_cpu, switches in rows:
        print(f"{label:68} {rate:7.0f} {rate / free:10.2f} {server_cpu:18.0f} {client_cpu:18.0f} {switches:13.1f}")
    console_rate = next(rate for label, rate, *_ in rows if label == consoles[0][0])
    print(f"\nthe disk: raw sqlite3 one-row transactions (DELETE/FULL) {raw:.0f}/s; "
          f"the console's single POSTs are x{console_rate / raw:.2f} of it (a group commit carries several runs)")

    back_to_back = request_path_cpu(tmp / "a", 0.0)
    paused = request_path_cpu(tmp / "b", args.commit_ms / 1000)
    print("\nconsole request path, commit stubbed (Flask, validation, answer), CPU per request:")
    print(
        f"  back to back: {back_to_back:.0f} us; {args.commit_ms:g} ms apart: {paused:.0f} us "
        f"(x{paused / back_to_back:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
