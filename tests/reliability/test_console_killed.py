"""Fault 3: the console (gunicorn master and workers) SIGKILLed while senders stream ingest batches.

Every record answered 2xx before the kill is stored (checked in the store while the
console is still dead), SQLite's integrity check is `ok`, the senders resume after
the restart and nothing is stored twice. SQLite DELETE/FULL and WAL/NORMAL, PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import empty_postgres
from tests.reliability.support import (
    SOAK,
    agent_env,
    integrity_check,
    make_console,
    record_figures,
    sqlite_env,
    store_rows,
    wait_until,
)

pytestmark = pytest.mark.reliability

# A sender: posts batches of spool lines, retries each until a 2xx, and only then
# appends the batch number to its ack file (what the console acknowledged).
SENDER = r"""
import http.client, json, os, sys, time
from datetime import datetime, timezone

port, sender, batches, size, ack_path = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ack = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
start = datetime.now(timezone.utc).isoformat()
head = {"event_id": f"kill-{sender}", "run_id": f"kill-run-{sender}", "agent_name": "kill-sender",
        "job_type": "load", "start_time": start}
conn = None
errors = {}
for b in range(batches):
    now = datetime.now(timezone.utc).isoformat()
    lines = [{"v": 1, "id": f"{sender}-{b}-{k}", "kind": "event", "ts": now, **head,
              "data": {"event_type": "load", "payload": {"b": b, "k": k}}} for k in range(size)]
    if b == 0:
        lines.insert(0, {"v": 1, "id": f"{sender}-start", "kind": "run_started", "ts": start, **head,
                         "data": {"status": "running"}})
    body = json.dumps(lines).encode()
    while True:
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/api/v1/ingest", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            answer = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.05)
            continue
        if 200 <= resp.status < 300:
            result = json.loads(answer)
            assert not result["rejected"], result
            os.write(ack, f"{b} {result['accepted']} {result['duplicates']}\n".encode())
            break
        errors[str(resp.status)] = errors.get(str(resp.status), 0) + 1
        if resp.status >= 500 and resp.status != 503:
            print(f"HTTP {resp.status}: {answer[:500]!r}", file=sys.stderr)
            sys.exit(3)
        time.sleep(0.1)
print(json.dumps(errors), flush=True)
"""

BACKENDS = ["sqlite-DELETE-FULL", "sqlite-WAL-NORMAL", "postgresql"]


def acked(path: Path) -> list[tuple[int, int, int]]:
    if not path.exists():
        return []
    return [tuple(int(x) for x in line.split()) for line in path.read_text().splitlines() if line.count(" ") == 2]


def console_env(kind: str, request, tmp_path) -> dict[str, str]:
    if kind.startswith("sqlite"):
        _, journal, sync = kind.split("-")
        return sqlite_env(request.getfixturevalue("sqlite_template"), tmp_path, journal, sync)
    url = request.getfixturevalue("pg_database_url")
    empty_postgres(url)
    return {"TELEMETRY_DATABASE_URL": url, "TELEMETRY_BASE_DIR": str(tmp_path / "console-base"),
            "TELEMETRY_SECRET_KEY": "reliability"}


def check_kill_under_load(kind, request, tmp_path, consoles, senders, batches, size, kills, name):
    env = {**console_env(kind, request, tmp_path), "TELEMETRY_API_WORKERS": "2"}
    console = make_console(env, tmp_path)
    consoles.append(console)
    console.start()
    procs = []
    for s in range(senders):
        ack = tmp_path / f"ack-{s}.log"
        proc = subprocess.Popen([sys.executable, "-c", SENDER, str(console.port), f"s{s}", str(batches), str(size),
                                 str(ack)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append((proc, ack))
    checked_before_restart = []
    for kill in range(kills):
        target = (kill + 1) * batches // (kills + 2)  # kill while every sender is mid-stream
        assert wait_until(lambda t=target: all(len(acked(a)) >= t for _, a in procs), 120), "senders stalled"
        console.kill()
        answered = {f"s{s}": {b for b, _, _ in acked(a)} for s, (_, a) in enumerate(procs)}
        # The console is dead: what it acknowledged must be in the store now.
        if env.get("TELEMETRY_DB_PATH"):
            assert integrity_check(env["TELEMETRY_DB_PATH"]) == "ok"
        stored = store_rows(env, "SELECT payload_json, uid FROM run_events")
        stored_ids = {uid for _, uid in stored}
        missing = [(s, b) for s, bs in answered.items() for b in bs
                   if any(f"{s}-{b}-{k}" not in stored_ids for k in range(size))]
        assert not missing, f"acknowledged but not stored after kill {kill}: {missing[:5]}"
        checked_before_restart.append(sum(len(bs) for bs in answered.values()) * size)
        time.sleep(0.3)
        console.start()
    errors = []
    for proc, _ in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        errors.append(json.loads(out.splitlines()[-1]))

    if env.get("TELEMETRY_DB_PATH"):
        assert integrity_check(env["TELEMETRY_DB_PATH"]) == "ok"
    rows = store_rows(env, "SELECT uid, count(*) FROM run_events GROUP BY uid HAVING count(*) > 1")
    assert rows == []
    total = store_rows(env, "SELECT count(*), count(DISTINCT uid) FROM run_events")[0]
    assert tuple(total) == (senders * batches * size, senders * batches * size)
    runs = store_rows(env, "SELECT count(*) FROM agent_runs WHERE agent_name = 'kill-sender'")[0][0]
    assert runs == senders
    replays = sum(d for _, a in procs for _, _, d in acked(a))
    record_figures(name, {"backend": kind, "senders": senders, "batches_per_sender": batches,
                          "records_per_batch": size, "kills": kills,
                          "records_acknowledged_before_each_kill": checked_before_restart,
                          "records_stored": total[0], "records_lost": 0, "duplicate_rows": 0,
                          "replayed_lines_answered_duplicate": replays, "sender_errors": errors})


@pytest.mark.parametrize("kind", BACKENDS)
def test_console_killed_under_load_loses_no_acknowledged_record_and_stores_none_twice(
    kind, request, tmp_path, consoles
):
    check_kill_under_load(kind, request, tmp_path, consoles, senders=3, batches=60, size=50, kills=2,
                          name=f"console_killed_{kind}")


@pytest.mark.soak
@pytest.mark.parametrize("kind", BACKENDS)
def test_soak_console_killed_five_times_under_heavier_load(kind, request, tmp_path, consoles):
    assert SOAK
    check_kill_under_load(kind, request, tmp_path, consoles, senders=4, batches=300, size=200, kills=5,
                          name=f"console_killed_soak_{kind}")


SDK_AGENT = r"""
import json, os, sys, time
from telemetry import TelemetryClient

agent, side_path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
side = os.open(side_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
client = TelemetryClient()
run_id = client.start_run(agent, "stream", run_id=f"{agent}-stream")
deadline, i = time.monotonic() + seconds, 0
while time.monotonic() < deadline:
    client.log_event(run_id, "tick", {"i": i})
    os.write(side, f"{i}\n".encode())
    i += 1
    time.sleep(0.002)
client.end_run(run_id, status="success", items_succeeded=i)
left = client.flush(timeout=60)
print(json.dumps({"handed": i, "left": left, "status": client.status()}), flush=True)
"""


def test_sdk_senders_resume_by_themselves_after_the_console_is_killed(sqlite_template, tmp_path, consoles):
    env = {**sqlite_env(sqlite_template, tmp_path, "WAL", "NORMAL"), "TELEMETRY_API_WORKERS": "2"}
    console = make_console(env, tmp_path)
    consoles.append(console)
    console.start()
    procs = []
    for k in range(3):  # three machines: three base dirs, three senders
        side = tmp_path / f"sdk-{k}.log"
        procs.append(subprocess.Popen([sys.executable, "-c", SDK_AGENT, f"sdk{k}", str(side), "5"],
                                      env=agent_env(tmp_path / f"base-{k}", console.url),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    time.sleep(2.0)
    console.kill()
    time.sleep(1.0)
    console.start()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.splitlines()[-1]))
    assert all(r["left"] == 0 and r["status"]["records_lost"] == 0 for r in results), results
    for k, r in enumerate(results):
        rows = store_rows(env, "SELECT count(*), count(DISTINCT e.uid), min(r.status), max(r.items_succeeded) "
                               "FROM run_events e JOIN agent_runs r ON r.event_id = e.event_id "
                               "WHERE r.run_id = :run", {"run": f"sdk{k}-stream"})
        assert tuple(rows[0]) == (r["handed"], r["handed"], "success", r["handed"]), (k, rows, r["handed"])
    assert integrity_check(env["TELEMETRY_DB_PATH"]) == "ok"
    record_figures("console_killed_sdk_senders", {
        "agents": 3, "events_handed": [r["handed"] for r in results], "lost": 0, "duplicates": 0,
        "duplicates_answered_on_replay": [r["status"]["duplicates"] for r in results]})
