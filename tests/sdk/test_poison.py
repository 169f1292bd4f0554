"""A line the console fails on (HTTP 500) never stalls the lines after it; an outage never dead-letters."""

import json
import time

import pytest
from conftest import free_port
from telemetry import TelemetryClient
from telemetry.cli import main
from telemetry.sender import Sender
from telemetry.spool import SpoolWriter, make_line, run_head, spool_counts

# Nesting deep enough to break a recursive JSON reader on the console's side.
POISON = "[" * 3000 + "]" * 3000
CRASH = {"detail": "RecursionError: maximum recursion depth exceeded"}


def is_poison(item):
    return isinstance(item, dict) and (item.get("data") or {}).get("metrics_json") == POISON


def fails_on_poison(items):
    """The console's bug: any batch holding the poison line answers 500."""
    return (500, CRASH) if any(is_poison(i) for i in items) else None


def dead_letters(raw):
    return [json.loads(x) for p in sorted(raw.glob("rejected_*.ndjson")) for x in p.read_text().splitlines()]


def spool_poison_then_good(raw, good=3):
    """A poisoned run_started, then `good` lines of another run, in today's spool file."""
    writer = SpoolWriter(raw)
    day = time.strftime("%Y%m%d", time.gmtime())
    bad = run_head("e-bad", "r-bad", "a", "j", "2026-12-04T10:00:00+00:00")
    assert writer.append(make_line("run_started", bad, {"status": "running", "metrics_json": POISON}), day)
    head = run_head("e-good", "r-good", "b", "j", "2026-12-04T10:00:01+00:00")
    for i in range(good):
        assert writer.append(make_line("event", head, {"event_type": "step", "payload": i}), day)
    writer.close()


def test_poison_metrics_json_does_not_block_later_lines(fake_ingest, sdk_env, monkeypatch):
    monkeypatch.setenv("TELEMETRY_API_URL", fake_ingest.url)
    monkeypatch.setenv("TELEMETRY_MAX_LINE_ATTEMPTS", "2")
    fake_ingest.fail_batch_if = fails_on_poison
    client = TelemetryClient()
    poisoned = client.start_run("a", "j", metrics_json=POISON)
    with client.track_run("b", "j") as ctx:
        ctx.log_event("step", 1)
    assert client.flush(timeout=60) == 0  # hang guard only

    assert [x["agent_name"] for x in fake_ingest.kinds("run_ended")] == ["b"]
    assert len(fake_ingest.kinds("event")) == 1
    assert not any(is_poison(x) for x in fake_ingest.lines.values())
    dead = dead_letters(sdk_env / "raw")
    assert len(dead) == 1 and json.loads(dead[0]["line"])["run_id"] == poisoned
    assert dead[0]["http_status"] == 500 and CRASH["detail"] in dead[0]["reason"]
    status = client.status()
    assert status["dead_letters"] == 1 and status["held_lines"] == []
    assert status["last_dead_letter"]["http_status"] == 500

    fake_ingest.fail_batch_if = None  # the console is fixed
    assert main(["replay-dead-letters", "--timeout", "60"]) == 0
    assert [x["run_id"] for x in fake_ingest.kinds("run_started") if is_poison(x)] == [poisoned]
    assert dead_letters(sdk_env / "raw") == []
    assert client.status()["dead_letters"] == 0


def test_a_line_failing_alone_is_held_shown_and_counted_across_processes(fake_ingest, sdk_env, monkeypatch,
                                                                          capsys):
    monkeypatch.setenv("TELEMETRY_API_URL", fake_ingest.url)
    raw = sdk_env / "raw"
    fake_ingest.fail_batch_if = fails_on_poison
    spool_poison_then_good(raw)
    first = Sender(raw, fake_ingest.url, flush_timeout=0, max_line_attempts=3)
    first.deliver_until(time.monotonic() + 60, stop_on_failure=True)  # one lone failure, then backoff
    first.release_lock()
    assert len(fake_ingest.kinds("event")) == 1  # the probe: the line after it was accepted

    assert main(["status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [h["attempts"] for h in report["held_lines"]] == [1]
    assert CRASH["detail"] in report["held_lines"][0]["answer"]
    assert report["rejected"] == 0 and report["pending"] == 4

    later = Sender(raw, fake_ingest.url, flush_timeout=0, max_line_attempts=2)  # a new process: count 1 is kept
    assert later.deliver_until(time.monotonic() + 60, stop_on_failure=False) == 0
    later.release_lock()
    assert len(dead_letters(raw)) == 1 and len(fake_ingest.kinds("event")) == 3

    assert main(["status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["held_lines"] == [] and report["rejected"] == 1
    assert report["last_dead_letter"]["http_status"] == 500


def test_replay_keeps_torn_lines_and_reports_a_line_still_failing(fake_ingest, sdk_env, monkeypatch):
    monkeypatch.setenv("TELEMETRY_API_URL", fake_ingest.url)
    monkeypatch.setenv("TELEMETRY_MAX_LINE_ATTEMPTS", "1")
    raw = sdk_env / "raw"
    spool_poison_then_good(raw, good=1)
    with open(next(raw.glob("events_*.ndjson")), "ab") as fh:
        fh.write(b'{"v":1,"id":"torn", "kind":"ev\n')
    fake_ingest.fail_batch_if = fails_on_poison
    assert main(["sync", "--timeout", "60"]) == 0
    assert sorted(d["http_status"] or 0 for d in dead_letters(raw)) == [0, 500]

    # Replayed too early: no line after it is accepted, so its failures count for nothing.
    assert main(["replay-dead-letters", "--timeout", "2"]) == 1
    assert [d["reason"][:9] for d in dead_letters(raw)] == ["torn line"]  # can never be accepted: kept
    assert spool_counts(raw)["pending"] == 1

    fake_ingest.fail_batch_if = None
    assert main(["sync", "--timeout", "60"]) == 0
    assert any(is_poison(x) for x in fake_ingest.lines.values())


OUTAGES = {
    "500 for every batch": lambda items: (500, {"detail": "database is locked"}),
    "503 for every batch": lambda items: (503, {"detail": "database unavailable"}),
    "502 from a proxy": lambda items: (502, b"<html>Bad Gateway</html>"),
    "504 from a proxy": lambda items: (504, b"<html>Gateway Timeout</html>"),
    "503 for the poison line only": lambda items: (503, CRASH) if any(is_poison(i) for i in items) else None,
}


@pytest.mark.parametrize("answer", OUTAGES.values(), ids=OUTAGES.keys())
def test_an_outage_never_dead_letters_however_long_it_lasts(fake_ingest, tmp_path, answer):
    raw = tmp_path / "raw"
    spool_poison_then_good(raw)
    fake_ingest.fail_batch_if = answer
    sender = Sender(raw, fake_ingest.url, flush_timeout=0, max_line_attempts=1, max_backoff=0.001)
    deadline = time.monotonic() + 120  # hang guard
    while len(fake_ingest.requests) < 40 and time.monotonic() < deadline:
        sender.deliver_until(time.monotonic() + 0.2, stop_on_failure=False)
    sender.release_lock()
    assert len(fake_ingest.requests) >= 40
    assert dead_letters(raw) == [] and sender.held_lines() == []
    assert not any(is_poison(x) for x in fake_ingest.lines.values())
    assert sender.pending() == 4


@pytest.mark.parametrize("trouble", ["refused", "timeout"])
def test_refused_or_timed_out_connections_never_dead_letter(fake_ingest, tmp_path, trouble):
    raw = tmp_path / "raw"
    spool_poison_then_good(raw)
    if trouble == "timeout":
        fake_ingest.hang.set()
        url = fake_ingest.url
    else:
        url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sender = Sender(raw, url, flush_timeout=0, max_line_attempts=1, max_backoff=0.001, http_timeout=0.05)
    for _ in range(20):
        sender.deliver_until(time.monotonic() + 0.1, stop_on_failure=False)
    sender.release_lock()
    assert ("timed out" if trouble == "timeout" else "refused") in sender.last_error.lower()
    assert dead_letters(raw) == [] and sender.held_lines() == []
    assert sender.pending() == 4
