"""End to end: agents → spool → sender / `telemetry sync` → the real console's ingest."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from conftest import wait_for
from telemetry import TelemetryClient
from telemetry.spool import make_line, run_head, spool_counts

TELEMETRY_CLI = str(Path(sys.executable).with_name("telemetry"))


def cli(base, url, *args, timeout=120):
    env = dict(os.environ, TELEMETRY_BASE_DIR=str(base), TELEMETRY_API_URL=url)
    return subprocess.run([TELEMETRY_CLI, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


KILLED_AGENT = r"""
import json, sys, time
from telemetry import TelemetryClient
c = TelemetryClient()
run_id = c.start_run("killed-agent", "job", product="p")
for i in range(int(sys.argv[1])):
    c.log_event(run_id, "step", {"i": i})
c.update_run(run_id, items_discovered=7)
print(json.dumps({"run_id": run_id, "event_id": c._runs[run_id].event_id}), flush=True)
time.sleep(600)
"""


def test_kill_9_mid_run_then_sync_delivers_every_record_exactly_once(console, sdk_env):
    env = dict(os.environ, TELEMETRY_API_URL=console.url)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_AGENT, "300"], env=env,
                            stdout=subprocess.PIPE, text=True)
    ids = json.loads(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    result = cli(sdk_env, console.url, "sync", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    run = console.run(ids["event_id"])
    assert run["status"] == "running" and run["items_discovered"] == 7 and run["product"] == "p"
    events = console.events(ids["event_id"])
    assert sorted(e["payload"]["i"] for e in events) == list(range(300))
    assert cli(sdk_env, console.url, "sync").returncode == 0  # a second sync replays nothing
    assert len(console.events(ids["event_id"])) == 300
    assert spool_counts(sdk_env / "raw")["pending"] == 0


DOWN_AGENT = r"""
import json
from telemetry import TelemetryClient
c = TelemetryClient()
with c.track_run("offline-agent", "job", environment="ci") as ctx:
    for i in range(50):
        ctx.log_event("step", {"i": i})
    ctx.set_metrics(items_succeeded=50, metrics_json={"tokens": 12}, output_summary="ok")
ok, _ = c.associate_commit(ctx.run_id, "a1b2c3d4", "llm", "Bot <bot@example.com>")
print(json.dumps({"event_id": ctx.event_id, "commit": ok}), flush=True)
"""


def test_console_down_for_the_whole_run_then_started_gets_everything(console_factory, sdk_env):
    console = console_factory()  # built, not started: its port refuses connections
    env = dict(os.environ, TELEMETRY_API_URL=console.url)
    out = subprocess.run([sys.executable, "-c", DOWN_AGENT], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    ids = json.loads(out.stdout.splitlines()[-1])
    assert ids["commit"] is True
    pending = cli(sdk_env, console.url, "sync", "--timeout", "1")
    assert pending.returncode == 1 and "pending" in pending.stderr
    console.start()
    result = cli(sdk_env, console.url, "sync", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    run = console.run(ids["event_id"])
    assert run["status"] == "success" and run["items_succeeded"] == 50
    assert run["environment"] == "ci" and run["output_summary"] == "ok"
    assert run["metrics_json"] == {"tokens": 12}
    assert run["git_commit_hash"] == "a1b2c3d4" and run["git_commit_source"] == "llm"
    assert len(console.events(ids["event_id"])) == 50


def test_rejected_records_are_dead_lettered_and_the_rest_delivered(console, sdk_env):
    raw = sdk_env / "raw"
    client = TelemetryClient()  # console URL unset: nothing is sent until the sync
    run_id = client.start_run("dl-agent", "job")
    client.log_event(run_id, "good", 1)
    event_id = client._runs[run_id].event_id
    head = run_head(event_id, run_id, "dl-agent", "job", client._runs[run_id].start_time)
    day = next(raw.glob("events_*.ndjson")).name[7:15]
    client._writer.append(make_line("bogus_kind", head, {}), day)
    client._writer.append(make_line("run_updated", head, {"items_failed": -5}), day)
    client._writer.append(make_line("event", head, {"event_type": "x"}).replace(b'"v":1', b'"v":99'), day)
    client.end_run(run_id)
    client._sender.stop()  # this process's sender (aimed at nothing) lets `sync` deliver
    result = cli(sdk_env, console.url, "sync", "--timeout", "60")
    assert result.returncode == 0, result.stderr
    assert "3 record(s) rejected" in result.stderr
    dead = [json.loads(x) for p in raw.glob("rejected_*.ndjson") for x in p.read_text().splitlines()]
    assert len(dead) == 3 and all(d["reason"] for d in dead)
    assert console.run(event_id)["status"] == "success"
    assert [e["event_type"] for e in console.events(event_id)] == ["good"]


def test_twenty_threads_times_a_thousand_events_reach_the_console(console, sdk_env, monkeypatch):
    monkeypatch.setenv("TELEMETRY_API_URL", console.url)
    client = TelemetryClient()
    run_id = client.start_run("threaded-agent", "job")
    event_id = client._runs[run_id].event_id

    def work(t):
        for i in range(1000):
            client.log_event(run_id, "e", {"t": t, "i": i})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    client.end_run(run_id, status="completed")
    assert client.flush(timeout=120) == 0
    events = console.events(event_id)
    assert len(events) == 20000
    assert len({(e["payload"]["t"], e["payload"]["i"]) for e in events}) == 20000
    assert console.run(event_id)["status"] == "success"


TWO_PROC_AGENT = r"""
import json, sys
from telemetry import TelemetryClient
c = TelemetryClient()
with c.track_run("shared-" + sys.argv[1], "job") as ctx:
    for i in range(500):
        ctx.log_event("e", {"i": i})
left = c.flush(timeout=60)
print(json.dumps({"event_id": ctx.event_id, "left": left}), flush=True)
"""


def test_two_processes_sharing_one_base_dir(console, sdk_env):
    env = dict(os.environ, TELEMETRY_API_URL=console.url)
    procs = [subprocess.Popen([sys.executable, "-c", TWO_PROC_AGENT, str(n)], env=env,
                              stdout=subprocess.PIPE, text=True) for n in range(2)]
    outs = [json.loads(p.communicate(timeout=120)[0].splitlines()[-1]) for p in procs]
    assert [o["left"] for o in outs] == [0, 0]
    for out in outs:
        assert console.run(out["event_id"])["status"] == "success"
        event_id = out["event_id"]
        assert wait_for(lambda e=event_id: len(console.events(e)) == 500, timeout=30)


def test_sync_delivers_a_finished_file_and_reports_its_torn_last_line(console, sdk_env):
    raw = Path(sdk_env) / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    head = run_head("evt-torn-e2e", "run-torn-e2e", "torn-agent", "spool", "2000-01-01T00:00:00+00:00")
    started = make_line("run_started", head, {"status": "running"})
    torn = make_line("run_ended", head, {"status": "success"})[:-30]  # a crash mid-write
    (raw / "events_20000101.ndjson").write_bytes(started + torn)

    result = cli(sdk_env, console.url, "sync", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert console.run("evt-torn-e2e")["status"] == "running"  # the complete line arrived
    assert spool_counts(raw)["pending"] == 0
    dead = [json.loads(x) for p in raw.glob("rejected_*.ndjson") for x in p.read_text().splitlines()]
    assert "torn" in dead[0]["reason"]
