"""Fault 4: the database goes away or stays locked under load.

PostgreSQL (a throw-away server of this test's own, never the shared one) restarted
mid-load: requests get 503 with Retry-After, never 500, and the console recovers by
itself. SQLite locked by another process (BEGIN EXCLUSIVE) for 10 s: writes wait or
answer 503, nothing acknowledged is lost, the file stays sound.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
import requests

from console.core.settings import load_settings
from console.store import migrate
from tests.reliability.pg import ThrowawayPostgres
from tests.reliability.support import (
    integrity_check,
    make_console,
    record_figures,
    sqlite_env,
    store_rows,
)

pytestmark = pytest.mark.reliability


class Load:
    """Threads that write (ingest, POST /runs) and read (API, /health, a page) until stopped."""

    def __init__(self, url: str, writers: int = 2):
        self.url = url
        self.writers = writers
        self.results: list[tuple[float, str, int, str | None]] = []  # (time, what, status, Retry-After)
        self.acked: set[str] = set()  # line ids of ingest batches answered 2xx
        self.acked_runs: set[str] = set()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._write, args=(w,), daemon=True) for w in range(writers)]
        self.threads.append(threading.Thread(target=self._read, daemon=True))

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def _note(self, what, resp):
        with self.lock:
            self.results.append((time.monotonic(), what, resp.status_code, resp.headers.get("Retry-After")))

    def _write(self, w):
        session = requests.Session()
        start = datetime.now(UTC).isoformat()
        head = {"event_id": f"db-{w}", "run_id": f"db-run-{w}", "agent_name": "db-trouble", "job_type": "load",
                "start_time": start}
        n = 0
        while not self.stop.is_set():
            now = datetime.now(UTC).isoformat()
            lines = [{"v": 1, "id": f"w{w}-{n}-{k}", "kind": "event", "ts": now, **head,
                      "data": {"event_type": "load", "payload": {"n": n, "k": k}}} for k in range(20)]
            if n == 0:
                lines.insert(0, {"v": 1, "id": f"w{w}-start", "kind": "run_started", "ts": start, **head, "data": {}})
            try:
                resp = session.post(self.url + "/api/v1/ingest", json=lines, timeout=60)
            except requests.RequestException:
                time.sleep(0.05)
                continue
            self._note("ingest", resp)
            if resp.status_code == 200:
                with self.lock:
                    self.acked.update(line["id"] for line in lines)
                n += 1
            run = {"event_id": str(uuid.uuid4()), "run_id": f"single-{w}-{n}", "agent_name": "db-trouble",
                   "job_type": "single", "start_time": now}
            try:
                resp = session.post(self.url + "/api/v1/runs", json=run, timeout=60)
            except requests.RequestException:
                continue
            self._note("post_run", resp)
            if resp.status_code in (200, 201):
                with self.lock:
                    self.acked_runs.add(run["event_id"])
            time.sleep(0.02)

    def _read(self):
        session = requests.Session()
        paths = ["/api/v1/runs?limit=5", "/health", "/metrics", "/api/v1/runs/stale?older_than_minutes=0", "/",
                 "/api/v1/runs/db-0", "/api/v1/stats"]
        i = 0
        while not self.stop.is_set():
            path = paths[i % len(paths)]
            i += 1
            try:
                resp = session.get(self.url + path, timeout=60)
            except requests.RequestException:
                time.sleep(0.05)
                continue
            self._note(path, resp)
            time.sleep(0.02)

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> Counter:
        with self.lock:
            return Counter((what, status) for t, what, status, _ in self.results if since <= t < until)

    def bad(self) -> list:
        with self.lock:
            return [r for r in self.results
                    if r[2] >= 500 and (r[2] != 503 or not r[3])
                    and not (r[1] == "/api/v1/runs/db-0" and r[2] == 404)]


def check_acked_stored(env, load: Load) -> None:
    stored = {uid for (uid,) in store_rows(env, "SELECT uid FROM run_events")}
    lost = load.acked - stored - {i for i in load.acked if i.endswith("-start")}
    assert not lost, f"{len(lost)} acknowledged lines lost, e.g. {sorted(lost)[:5]}"
    runs = {e for (e,) in store_rows(env, "SELECT event_id FROM agent_runs WHERE job_type = 'single'")}
    assert load.acked_runs <= runs


def recovered(load: Load, after: float, timeout: float) -> float | None:
    """Seconds after `after` from which every request answered below 500 (None if never)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        with load.lock:
            late = [r for r in load.results if r[0] >= after]
        errors = [r for r in late if r[2] >= 500]
        last_error = max((r[0] for r in errors), default=after)
        ok_since = [r for r in late if r[0] > last_error]
        if len(ok_since) >= 20 and {r[1] for r in ok_since} >= {"ingest", "post_run"}:
            return round(last_error - after, 2)
    return None


def check_postgres_restart(tmp_path, consoles, restarts: int, down_seconds: float, name: str):
    pg = ThrowawayPostgres()
    try:
        pg.start()
        url = pg.create_database("restart_test")
        migrate.upgrade(load_settings({"TELEMETRY_DATABASE_URL": url}))
        env = {"TELEMETRY_DATABASE_URL": url, "TELEMETRY_BASE_DIR": str(tmp_path / "console-base"),
               "TELEMETRY_SECRET_KEY": "reliability", "TELEMETRY_API_WORKERS": "2"}
        console = make_console(env, tmp_path)
        consoles.append(console)
        console.start()
        load = Load(console.url)
        load.start()
        recoveries = []
        try:
            for _ in range(restarts):
                time.sleep(1.5)
                began = time.monotonic()
                pg.restart(down_seconds=down_seconds, mode="immediate")
                back = time.monotonic()
                seconds = recovered(load, back, 30)
                assert seconds is not None, f"no recovery: {load.statuses(back)}; log: {console.log()}"
                recoveries.append({"down_seconds": round(back - began, 2), "errors_until_after_up_s": seconds})
        finally:
            load.finish()
        bad = load.bad()
        assert not bad, f"5xx other than 503 + Retry-After: {bad[:10]}"
        counts = load.statuses()
        assert any(status == 503 for (_, status) in counts), counts  # the outage was seen ...
        assert console.proc.poll() is None  # ... and survived without a restart of the console
        check_acked_stored(env, load)
        record_figures(name, {"restarts": restarts, "recoveries": recoveries, "requests": sum(counts.values()),
                              "by_status": {f"{w} {s}": n for (w, s), n in sorted(counts.items())},
                              "acked_lines": len(load.acked), "acked_runs": len(load.acked_runs),
                              "lost": 0, "http_500": 0})
    finally:
        pg.destroy()


def test_postgresql_restarted_mid_load_answers_503_with_retry_after_and_recovers_by_itself(tmp_path, consoles):
    check_postgres_restart(tmp_path, consoles, restarts=2, down_seconds=2.0, name="postgres_restart")


@pytest.mark.soak
def test_soak_postgresql_restarted_five_times(tmp_path, consoles):
    check_postgres_restart(tmp_path, consoles, restarts=5, down_seconds=5.0, name="postgres_restart_soak")


LOCKER = r"""
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
print("released", flush=True)
"""


@pytest.mark.parametrize("journal", ["DELETE", "WAL"])
def test_sqlite_locked_by_another_process_for_ten_seconds_waits_or_answers_503(
    journal, tmp_path, sqlite_template, consoles
):
    env = sqlite_env(sqlite_template, tmp_path, journal, "FULL" if journal == "DELETE" else "NORMAL")
    console = make_console({**env, "TELEMETRY_API_WORKERS": "2"}, tmp_path)
    consoles.append(console)
    console.start()
    load = Load(console.url)
    load.start()
    time.sleep(1.0)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, env["TELEMETRY_DB_PATH"], "10"],
                              stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    locked_at = time.monotonic()
    assert locker.stdout.readline().strip() == "released"
    released_at = time.monotonic()
    locker.wait(10)
    seconds = recovered(load, released_at, 30)
    load.finish()
    assert seconds is not None, load.statuses(released_at)
    bad = load.bad()
    assert not bad, f"5xx other than 503 + Retry-After: {bad[:10]}"
    during = load.statuses(locked_at, released_at)
    assert integrity_check(env["TELEMETRY_DB_PATH"]) == "ok"
    check_acked_stored(env, load)
    record_figures(f"sqlite_locked_{journal}", {
        "lock_seconds": round(released_at - locked_at, 2), "errors_until_after_release_s": seconds,
        "during_lock": {f"{w} {s}": n for (w, s), n in sorted(during.items())},
        "all": {f"{w} {s}": n for (w, s), n in sorted(load.statuses().items())},
        "acked_lines": len(load.acked), "lost": 0, "integrity_check": "ok", "http_500": 0})
