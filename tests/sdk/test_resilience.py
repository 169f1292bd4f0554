"""The agent keeps running whatever the disk, threads and processes do; losses are counted."""

import errno
import json
import os
import subprocess
import sys
import threading

import telemetry.spool
from conftest import wait_for
from telemetry import TelemetryClient
from telemetry.spool import spool_counts


def spooled(base):
    lines = []
    for path in sorted((base / "raw").glob("events_*.ndjson")):
        lines.extend(json.loads(x) for x in path.read_text().splitlines() if x)
    return lines


def test_base_dir_below_a_regular_file_never_raises_and_counts_losses(sdk_env, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TELEMETRY_BASE_DIR", str(blocker / "below"))
    client = TelemetryClient()
    with client.track_run("a", "j") as ctx:
        ctx.log_event("e", 1)
        ctx.set_metrics(items_discovered=1)
    ok, reason = client.associate_commit(ctx.run_id, "a1b2c3d", "llm")
    assert ok is False and "spool" in reason
    status = client.status()
    assert status["records_lost"] == 5 and status["records_spooled"] == 0
    assert "Not a directory" in status["last_error"] or "cannot open" in status["last_error"]
    assert client.flush(timeout=0.2) == 0


def test_injected_enospc_at_the_write_is_counted_and_the_spool_recovers(sdk_env, monkeypatch):
    client = TelemetryClient()
    run_id = client.start_run("a", "j")
    real_write = os.write

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(telemetry.spool, "_write", full_disk)
    for i in range(5):
        client.log_event(run_id, "lost", i)
    assert client.status()["records_lost"] == 5
    assert "No space left" in client.status()["last_error"]
    monkeypatch.setattr(telemetry.spool, "_write", real_write)
    client.end_run(run_id)
    kinds = [x["kind"] for x in spooled(sdk_env)]
    assert kinds == ["run_started", "run_ended"]


def test_a_short_write_is_counted_and_the_next_line_starts_clean(sdk_env, monkeypatch):
    client = TelemetryClient()
    run_id = client.start_run("a", "j")
    real_write = os.write
    monkeypatch.setattr(telemetry.spool, "_write", lambda fd, data: real_write(fd, data[:20]))
    client.log_event(run_id, "torn", 1)
    monkeypatch.setattr(telemetry.spool, "_write", real_write)
    client.end_run(run_id)
    raw = next((sdk_env / "raw").glob("events_*.ndjson")).read_text().splitlines()
    assert len(raw) == 3 and len(raw[1]) == 20
    assert json.loads(raw[2])["kind"] == "run_ended"
    assert client.status()["records_lost"] == 1


RLIMIT_AGENT = r"""
import json, resource, sys
from telemetry import TelemetryClient
client = TelemetryClient()
run_id = client.start_run("a", "j")
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
for i in range(200):
    client.log_event(run_id, "e", {"i": i, "pad": "x" * 100})
client.end_run(run_id)
print(json.dumps(client.status()))
"""


def test_rlimit_fsize_full_disk_the_agent_still_runs_and_counts_what_was_lost(sdk_env):
    env = dict(os.environ, TELEMETRY_FLUSH_TIMEOUT="0")
    proc = subprocess.run([sys.executable, "-c", RLIMIT_AGENT, "8000"], env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    status = json.loads(proc.stdout.decode().splitlines()[-1])
    kept = status["records_spooled"]
    assert status["records_lost"] > 0 and kept + status["records_lost"] == 202
    size = next((sdk_env / "raw").glob("events_*.ndjson")).stat().st_size
    assert size <= 8000
    assert "File too large" in status["last_error"] or "short write" in status["last_error"]
    complete = [x for x in (sdk_env / "raw").glob("events_*.ndjson")][0].read_bytes().split(b"\n")
    assert sum(1 for x in complete if x.endswith(b"}")) == kept


def test_twenty_threads_times_a_thousand_events_from_one_client(fake_ingest, sdk_env, monkeypatch):
    monkeypatch.setenv("TELEMETRY_API_URL", fake_ingest.url)
    client = TelemetryClient()
    run_id = client.start_run("a", "j")

    def work(t):
        for i in range(1000):
            client.log_event(run_id, "e", {"t": t, "i": i})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    client.end_run(run_id)
    assert client.flush(timeout=60) == 0
    events = fake_ingest.kinds("event")
    assert len(events) == 20000
    assert len({(e["data"]["payload"]["t"], e["data"]["payload"]["i"]) for e in events}) == 20000
    assert client.status()["records_lost"] == 0


def test_each_line_is_one_complete_object_even_under_concurrent_processes(sdk_env):
    code = (
        "from telemetry import TelemetryClient\n"
        "c = TelemetryClient()\nr = c.start_run('p', 'j')\n"
        "for i in range(2000): c.log_event(r, 'e', {'pad': 'y' * (i % 300)})\n"
        "c.end_run(r)\n"
    )
    env = dict(os.environ, TELEMETRY_FLUSH_TIMEOUT="0")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(3)]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    lines = spooled(sdk_env)  # json.loads of every line: none interleaved
    assert len(lines) == 3 * 2002
    assert spool_counts(sdk_env / "raw")["pending"] == 3 * 2002


def test_after_fork_the_child_starts_its_own_sender(fake_ingest, sdk_env, monkeypatch):
    monkeypatch.setenv("TELEMETRY_API_URL", fake_ingest.url)
    client = TelemetryClient()
    parent_run = client.start_run("parent", "j")
    assert client.flush(timeout=20) == 0  # the parent's sender holds the lock now
    pid = os.fork()
    if pid == 0:  # the child: log, wait for delivery by its own sender, report by exit code
        code = 1
        try:
            run_id = client.start_run("child", "j")
            client.log_event(run_id, "from-child", 1)
            client.end_run(run_id)
            code = 0 if client.flush(timeout=20) == 0 else 3
        finally:
            os._exit(code)
    client.end_run(parent_run)
    assert client.flush(timeout=20) == 0
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert wait_for(lambda: len(fake_ingest.kinds("run_ended")) == 2)
    assert {x["agent_name"] for x in fake_ingest.kinds("run_started")} == {"parent", "child"}
