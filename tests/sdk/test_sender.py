"""The sender against a scripted loopback ingest server: batching, retries, dead letters."""

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from telemetry import TelemetryClient
from telemetry.delivery import backoff_delay, parse_retry_after
from telemetry.sender import Sender
from telemetry.spool import SpoolWriter, apply_retention, load_cursor, make_line, run_head, spool_counts


@pytest.fixture
def client_for(sdk_env, monkeypatch):
    def make(fake, **env):
        monkeypatch.setenv("TELEMETRY_API_URL", fake.url)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return TelemetryClient()

    return make


def rejected_lines(base):
    out = []
    for path in (base / "raw").glob("rejected_*.ndjson"):
        out.extend(json.loads(x) for x in path.read_text().splitlines())
    return out


def test_lines_are_posted_as_the_spooled_bytes_with_token_and_user_agent(fake_ingest, client_for, sdk_env):
    client = client_for(fake_ingest, TELEMETRY_API_TOKEN="s3cret")
    with client.track_run("a", "j") as ctx:
        ctx.log_event("e", {"n": "é"})
    assert client.flush(timeout=20) == 0
    spool = b"".join(p.read_bytes() for p in (sdk_env / "raw").glob("events_*.ndjson"))
    bodies = b"".join(body for _, body in fake_ingest.requests)
    assert bodies == b"[" + b",".join(spool.splitlines()) + b"]"
    headers = fake_ingest.requests[0][0]
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["User-Agent"].startswith("local-telemetry-sdk/")
    assert client.status()["delivered"] == 3 and client.status()["pending"] == 0
    assert "s3cret" not in json.dumps(client.status())


def test_batches_hold_at_most_500_records_and_one_connection_is_reused(fake_ingest, client_for):
    client = client_for(fake_ingest)
    run_id = client.start_run("a", "j")
    for i in range(1200):
        client.log_event(run_id, "e", i)
    client.end_run(run_id)
    assert client.flush(timeout=30) == 0
    sizes = [json.loads(body).__len__() for _, body in fake_ingest.requests]
    assert max(sizes) <= 500 and sum(sizes) == 1202
    assert len(fake_ingest.kinds("event")) == 1200


def test_server_errors_and_429_are_retried_with_backoff_honouring_retry_after(fake_ingest, client_for):
    fake_ingest.script = [(503, {}, {"detail": "boom"}), (429, {"Retry-After": "2"}, {"detail": "slow"})]
    client = client_for(fake_ingest)
    client.end_run(client.start_run("a", "j"))
    started = time.monotonic()
    assert client.flush(timeout=30) == 0
    took = time.monotonic() - started
    assert len(fake_ingest.requests) == 3
    assert took >= 2.5  # ~1 s backoff after the 503, then at least the 2 s Retry-After
    assert len(fake_ingest.kinds("run_ended")) == 1
    assert client.status()["last_error"].startswith("HTTP 429")


def test_a_2xx_that_is_not_the_consoles_answer_acknowledges_nothing(fake_ingest, client_for):
    # Something else at the URL (a proxy's sign-in page, another service) answers 200.
    fake_ingest.script = [(200, {}, b"<html><body>Sign in to the network</body></html>"),
                          (200, {}, {"status": "ok"})]
    client = client_for(fake_ingest)
    client.end_run(client.start_run("a", "j"))
    assert client.flush(timeout=30) == 0
    bodies = [body for _, body in fake_ingest.requests]
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]  # the same lines, until the console took them
    assert len(fake_ingest.kinds("run_ended")) == 1
    status = client.status()
    assert status["rejected"] == 0
    assert "not the console's ingest answer" in status["last_error"]


def test_a_400_page_from_something_else_is_retried_not_dead_lettered(fake_ingest, client_for):
    fake_ingest.script = [(400, {}, b"<html><body>Bad Request</body></html>")] * 2
    client = client_for(fake_ingest)
    client.end_run(client.start_run("a", "j"))
    assert client.flush(timeout=30) == 0
    bodies = [body for _, body in fake_ingest.requests]
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]  # the whole batch again, not halved
    assert len(fake_ingest.kinds("run_ended")) == 1
    assert client.status()["rejected"] == 0  # nothing dead-lettered


def test_a_413_page_from_a_proxy_halves_the_batch(fake_ingest, client_for):
    fake_ingest.script = [(413, {}, b"<html><body>413 Request Entity Too Large</body></html>")]
    client = client_for(fake_ingest)
    client.end_run(client.start_run("a", "j"))
    assert client.flush(timeout=30) == 0
    assert [len(json.loads(body)) for _, body in fake_ingest.requests] == [2, 1, 1]
    assert len(fake_ingest.kinds("run_ended")) == 1
    assert client.status()["rejected"] == 0


def test_per_record_rejections_are_dead_lettered_and_not_retried(fake_ingest, client_for, sdk_env):
    fake_ingest.reject_if = lambda line: "bad payload" if line["kind"] == "event" else None
    client = client_for(fake_ingest)
    with client.track_run("a", "j") as ctx:
        ctx.log_event("e", 1)
    assert client.flush(timeout=20) == 0
    dead = rejected_lines(sdk_env)
    assert [d["reason"] for d in dead] == ["bad payload"]
    assert json.loads(dead[0]["line"])["kind"] == "event"
    assert len(fake_ingest.lines) == 2 and client.status()["rejected"] == 1
    assert spool_counts(sdk_env / "raw") == {"pending": 0, "delivered": 3}
    assert client.status()["dead_letters"] == 1


def test_a_line_that_breaks_the_envelope_is_found_by_halving_and_dead_lettered(fake_ingest, client_for, sdk_env):
    client = client_for(fake_ingest)
    run_id = client.start_run("a", "j")
    for i in range(20):
        client.log_event(run_id, "e", i)
    spool = next((sdk_env / "raw").glob("events_*.ndjson"))
    with open(spool, "ab") as fh:
        fh.write(b'{"v":1, this is not json}\n')  # starts and ends like an object
        fh.write(b'{"v":1,"id":"x", "kind":"event"\n')  # torn: never sent
    client.end_run(run_id)
    assert client.flush(timeout=20) == 0
    assert len(fake_ingest.kinds("event")) == 20 and len(fake_ingest.kinds("run_ended")) == 1
    reasons = sorted(d["reason"] for d in rejected_lines(sdk_env))
    assert reasons[0].startswith("HTTP 400") and reasons[1].startswith("torn line")


def test_auth_failures_are_retried_not_dead_lettered(fake_ingest, client_for, sdk_env):
    fake_ingest.script = [(401, {"WWW-Authenticate": "Bearer"}, {"detail": "unauthorized"})]
    client = client_for(fake_ingest)
    client.end_run(client.start_run("a", "j"))
    assert client.flush(timeout=20) == 0
    assert rejected_lines(sdk_env) == [] and len(fake_ingest.lines) == 2


def test_cursor_advances_only_after_acknowledgement_and_replay_sends_nothing_twice(fake_ingest, tmp_path):
    raw = tmp_path / "raw"
    writer = SpoolWriter(raw)
    head = run_head("e1", "r1", "a", "j", "2026-01-12T10:30:00+00:00")
    for kind in ("run_started", "run_ended"):
        line = make_line(kind, head, {"status": "running" if kind == "run_started" else "success"})
        assert writer.append(line, datetime.now(UTC).strftime("%Y%m%d"))
    down = Sender(raw, "http://127.0.0.1:9", flush_timeout=0)
    assert down.deliver_until(time.monotonic() + 5, stop_on_failure=True) == 2
    assert sum(load_cursor(raw)["files"].values()) == 0
    down.release_lock()
    up = Sender(raw, fake_ingest.url, flush_timeout=0)
    assert up.deliver_until(time.monotonic() + 20, stop_on_failure=False) == 0
    up.release_lock()
    assert len(fake_ingest.lines) == 2 and len(fake_ingest.requests) == 1
    again = Sender(raw, fake_ingest.url, flush_timeout=0)
    assert again.deliver_until(time.monotonic() + 20, stop_on_failure=False) == 0
    again.release_lock()
    assert len(fake_ingest.requests) == 1


def test_flush_returns_pending_when_the_console_hangs_and_calls_stay_fast(fake_ingest, client_for):
    fake_ingest.hang.set()
    client = client_for(fake_ingest)
    run_id = client.start_run("a", "j")
    started = time.monotonic()
    assert client.flush(timeout=0.5) >= 1
    assert time.monotonic() - started < 2.0
    t0 = time.perf_counter()
    for i in range(1000):
        client.log_event(run_id, "e", i)
    assert time.perf_counter() - t0 < 1.0


def test_retention_removes_only_delivered_old_files(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    old = (datetime.now(UTC) - timedelta(days=10)).strftime("%Y%m%d")
    older = (datetime.now(UTC) - timedelta(days=11)).strftime("%Y%m%d")
    today = datetime.now(UTC).strftime("%Y%m%d")
    for day in (old, older, today):
        (raw / f"events_{day}.ndjson").write_bytes(b"{}\n")
    offsets = {f"events_{old}.ndjson": 3, f"events_{today}.ndjson": 3}
    assert apply_retention(raw, offsets, 7) == [f"events_{old}.ndjson"]
    assert sorted(p.name for p in raw.iterdir()) == [f"events_{older}.ndjson", f"events_{today}.ndjson"]


def test_backoff_schedule_and_retry_after_parsing():
    for failures, base in [(1, 1), (2, 2), (3, 4), (7, 60), (30, 60), (5000, 60)]:  # an outage of days
        assert 0.8 * base <= backoff_delay(failures, 60) <= min(60, 1.2 * base)
    assert parse_retry_after("7") == 7
    assert parse_retry_after(None) == 0 and parse_retry_after("soon") == 0
    when = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 25 <= parse_retry_after(when) <= 31


AGENT = """
import os, sys, time
from telemetry import TelemetryClient
c = TelemetryClient()
with c.track_run("exit-agent", "job") as ctx:
    for i in range(int(sys.argv[1])):
        ctx.log_event("e", i)
print("done", flush=True)
"""


def _run_agent(sdk_env, url, count, flush_timeout="2"):
    env = dict(os.environ, TELEMETRY_API_URL=url, TELEMETRY_FLUSH_TIMEOUT=flush_timeout)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", AGENT, str(count)], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return time.monotonic() - started


def test_at_exit_the_sender_delivers_what_is_left_when_the_console_answers(fake_ingest, sdk_env):
    _run_agent(sdk_env, fake_ingest.url, 300)
    assert len(fake_ingest.lines) == 302
    assert spool_counts(sdk_env / "raw")["pending"] == 0


def test_at_exit_with_the_console_down_the_process_exits_at_once(sdk_env):
    baseline = _run_agent(sdk_env, "http://127.0.0.1:9", 0, flush_timeout="0")
    took = _run_agent(sdk_env, "http://127.0.0.1:9", 300, flush_timeout="30")
    assert took < baseline + 1.0
    assert spool_counts(sdk_env / "raw")["pending"] == 302 + 2


def test_a_line_glued_to_another_writers_torn_fragment_is_still_delivered(fake_ingest, tmp_path):
    """Two processes, a full disk: one write is cut short and the next process's line lands right after it."""
    raw = tmp_path / "raw"
    raw.mkdir()
    head = run_head("e-glued", "r-glued", "a", "j", "2026-01-12T10:30:00+00:00")
    started = make_line("run_started", head, {"status": "running"})
    cut_short = make_line("event", head, {"event_type": "step", "payload": {"v": 1}})[:40]
    whole = make_line("run_ended", head, {"status": "success", "metrics_json": {"v": 1, "id": "not a line"}})
    (raw / "events_20260112.ndjson").write_bytes(started + cut_short + whole)

    sender = Sender(raw, fake_ingest.url, flush_timeout=0)
    assert sender.deliver_until(time.monotonic() + 20, stop_on_failure=False) == 0
    sender.release_lock()
    assert sorted(line["kind"] for line in fake_ingest.lines.values()) == ["run_ended", "run_started"]
    dead = rejected_lines(tmp_path)
    assert len(dead) == 1 and dead[0]["reason"].startswith("torn line") and dead[0]["line"] == cut_short.decode()
