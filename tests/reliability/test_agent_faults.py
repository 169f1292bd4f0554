"""Faults 5 and 6 on the agent's side: a full disk, a damaged spool, a console that never answers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from telemetry.spool import make_line, run_head

from tests.reliability.support import (
    agent_env,
    make_console,
    percentile,
    record_figures,
    sqlite_env,
    sqlite_rows,
    telemetry_cli,
)

pytestmark = pytest.mark.reliability

DISK_FULL_AGENT = r"""
import errno, json, os, resource, sys
import telemetry.spool
from telemetry import TelemetryClient

mode = sys.argv[1]
client = TelemetryClient()
run_id = client.start_run("disk-agent", "full", run_id=f"disk-{mode}")
for i in range(20):
    client.log_event(run_id, "before", {"i": i})
raw = os.path.join(os.environ["TELEMETRY_BASE_DIR"], "raw")
spool = [os.path.join(raw, n) for n in os.listdir(raw) if n.startswith("events_")][0]
real_write = telemetry.spool._write
if mode == "rlimit":
    # CPython ignores SIGXFSZ: writes past the limit fail with EFBIG (or are cut short).
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(spool) + 1500, resource.RLIM_INFINITY))
else:
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    telemetry.spool._write = full
for i in range(100):
    client.log_event(run_id, "while_full", {"i": i})  # never raises, whatever the disk says
during = client.status()
if mode == "rlimit":
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
else:
    telemetry.spool._write = real_write
for i in range(30):
    client.log_event(run_id, "after", {"i": i})
client.end_run(run_id, status="success")
left = client.flush(timeout=30)
print(json.dumps({"during": during, "after": client.status(), "left": left}), flush=True)
"""


@pytest.mark.parametrize("mode", ["rlimit", "enospc"])
def test_a_full_disk_never_stops_the_agent_counts_what_was_lost_and_recovers(
    mode, tmp_path, sqlite_template, consoles
):
    env = sqlite_env(sqlite_template, tmp_path, "WAL", "NORMAL")
    console = make_console(env, tmp_path)
    consoles.append(console)
    console.start()
    base = tmp_path / "agent-base"
    proc = subprocess.run([sys.executable, "-c", DISK_FULL_AGENT, mode], env=agent_env(base, console.url),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    during, after = result["during"], result["after"]
    assert during["records_lost"] > 0 and during["last_error"]
    assert "spool write failed" in proc.stderr  # ... and said so in the log
    lost = after["records_lost"]
    assert lost == during["records_lost"]  # nothing more once space returned
    assert after["records_spooled"] + lost == 1 + 20 + 100 + 30 + 1
    assert result["left"] == 0
    # A torn last write (rlimit) is dead-lettered by the sender, not posted as a record.
    sync = telemetry_cli(base, console.url, "sync", "--timeout", "60")
    assert sync.returncode == 0, sync.stderr

    db = env["TELEMETRY_DB_PATH"]
    stored = sqlite_rows(db, "SELECT e.event_type, count(*) FROM run_events e JOIN agent_runs r "
                             "ON r.event_id = e.event_id WHERE r.run_id = ? GROUP BY 1", (f"disk-{mode}",))
    stored = dict(stored)
    assert stored["before"] == 20 and stored["after"] == 30
    assert stored.get("while_full", 0) == 100 - lost  # every record kept on disk arrived; the lost are counted
    status = sqlite_rows(db, "SELECT status FROM agent_runs WHERE run_id = ?", (f"disk-{mode}",))
    assert status == [("success",)]
    record_figures(f"disk_full_{mode}", {"records_handed": 152, "records_lost_counted": lost,
                                         "records_delivered": sum(stored.values()) + 2,
                                         "last_error": during["last_error"]})


def test_garbage_and_a_truncated_last_line_in_the_spool_are_skipped_with_a_report(
    tmp_path, sqlite_template, consoles
):
    env = sqlite_env(sqlite_template, tmp_path, "WAL", "NORMAL")
    console = make_console(env, tmp_path)
    consoles.append(console)
    console.start()
    base = tmp_path / "agent-base"
    raw = base / "raw"
    raw.mkdir(parents=True)
    start = datetime.now(UTC).isoformat()
    head = run_head("evt-garbage-1", "run-garbage-1", "garbage-agent", "spool", start)
    good = [make_line("run_started", head, {"status": "running"}, ts=start)]
    good += [make_line("event", head, {"event_type": "step", "payload": {"i": i}}) for i in range(40)]
    garbage = [
        b"this is not json\n",
        b"\x00\xff\xfe\x80 binary junk\n",
        b'{"v":1,"id":"broken", "kind": }\n',  # looks like an object, is not JSON
        b'{"v":1,"id":"no-fields","kind":"event"}\n',  # JSON, but not a spool line
        b'{"v":7,"id":"future","kind":"event"}\n',
        b"\n",  # an empty line is nothing, not a record
    ]
    cut = make_line("event", head, {"event_type": "step", "payload": {"i": 999}})[:-30]  # no newline: torn
    body = b"".join(good[:20]) + b"".join(garbage) + b"".join(good[20:])
    yesterday = raw / "events_20000101.ndjson"  # an old file nobody appends to any more
    yesterday.write_bytes(body + cut)
    # Today's file ends in a torn line too, then an agent appends after it (the next line starts clean?).
    today = raw / f"events_{datetime.now(UTC):%Y%m%d}.ndjson"
    tail = make_line("run_ended", head, {"status": "success", "items_succeeded": 40})
    today.write_bytes(cut + b"\n" + tail)

    sync = telemetry_cli(base, console.url, "sync", "--timeout", "60")
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert "rejected" in sync.stderr  # the report on stderr ...
    dead = [json.loads(x) for p in raw.glob("rejected_*.ndjson") for x in p.read_text().splitlines()]
    assert len(dead) == 7 and all(d["reason"] for d in dead)  # 5 garbage + 2 torn, in the dead-letter file
    db = env["TELEMETRY_DB_PATH"]
    rows = sqlite_rows(db, "SELECT status, items_succeeded FROM agent_runs WHERE event_id = 'evt-garbage-1'")
    assert rows == [("success", 40)]
    events = sqlite_rows(db, "SELECT json_extract(payload_json, '$.i') FROM run_events WHERE event_id = 'evt-garbage-1'")
    assert sorted(i for (i,) in events) == list(range(40))  # the rest delivered, the torn one not invented
    status = telemetry_cli(base, console.url, "status", "--json")
    report = json.loads(status.stdout)
    record_figures("spool_garbage", {"good_lines": 42, "garbage_lines": len(garbage) - 1, "torn_lines": 2,
                                     "dead_lettered": len(dead), "delivered_events": len(events),
                                     "status_after": report, "sync_stderr": sync.stderr.strip()})


HANGING_AGENT = r"""
import json, sys, time
from telemetry import TelemetryClient, TelemetryConfig

config = TelemetryConfig.from_env()
config.http_timeout = 1.0
config.max_backoff = 1.0
client = TelemetryClient(config)
timings = []
deadline = time.monotonic() + float(sys.argv[1])
n = 0
run_id = client.start_run("hang-agent", "slow-net")
while time.monotonic() < deadline:
    t = time.perf_counter_ns(); client.log_event(run_id, "step", {"n": n}); timings.append(time.perf_counter_ns() - t)
    n += 1
    time.sleep(0.001)
t = time.perf_counter_ns(); client.end_run(run_id); timings.append(time.perf_counter_ns() - t)
print(json.dumps({"timings_us": [x / 1000 for x in timings], "status": client.status(), "done_at": time.time()}),
      flush=True)
"""


class SilentServer:
    """Accepts TCP connections, reads what comes, never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self.held: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    def close(self):
        self.closed = True
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("seconds", [4.0, 0.3], ids=["in-backoff-at-exit", "request-in-flight-at-exit"])
def test_a_console_that_never_answers_costs_the_agent_nothing_and_never_delays_exit(seconds, tmp_path):
    server = SilentServer()
    try:
        base = tmp_path / "agent-base"
        proc = subprocess.run([sys.executable, "-c", HANGING_AGENT, str(seconds)],
                              env=agent_env(base, server.url, TELEMETRY_FLUSH_TIMEOUT="2"),
                              capture_output=True, text=True, timeout=60)
        exited_at = time.time()
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.splitlines()[-1])
    finally:
        server.close()
    exit_delay = exited_at - result["done_at"]
    timings = result["timings_us"]
    status = result["status"]
    assert status["records_lost"] == 0 and status["pending"] > 0  # kept on disk for the next process
    if seconds > 3:
        assert "timed out" in (status["last_error"] or "").lower() or "timeout" in (status["last_error"] or "").lower()
    assert server.accepted >= (2 if seconds > 3 else 1)  # it timed out and tried again
    assert exit_delay < 2 + 1.5  # the flush timeout, plus interpreter start-up noise
    assert percentile(timings, 99) < 20_000  # never waits for the network (a 1 s timeout); figures in the report
    record_figures(f"console_never_answers_{seconds:g}s", {
        "calls": len(timings), "p50_us": round(percentile(timings, 50), 1),
        "p99_us": round(percentile(timings, 99), 1), "max_us": round(max(timings), 1),
        "connections_tried": server.accepted, "exit_delay_seconds": round(exit_delay, 2),
        "flush_timeout_seconds": 2, "pending_left_on_disk": status["pending"], "last_error": status["last_error"]})


def test_a_truncated_last_line_of_a_file_nobody_writes_to_any_more_is_reported(tmp_path):
    base = tmp_path / "agent-base"
    raw = base / "raw"
    raw.mkdir(parents=True)
    head = run_head("evt-torn-1", "run-torn-1", "torn-agent", "spool", datetime.now(UTC).isoformat())
    line = make_line("event", head, {"event_type": "step", "payload": {}})
    (raw / "events_20000101.ndjson").write_bytes(line + line[:-30])
    sync = telemetry_cli(base, "http://127.0.0.1:9", "status", "--json")
    report = json.loads(sync.stdout)
    assert report["pending"] + report["rejected"] == 2  # the torn line is either pending or reported
