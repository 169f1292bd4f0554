"""The files the SDK creates are its user's only, and it never writes or reads them through a symlink."""

import json
import os
import stat
import time

import pytest
from telemetry import TelemetryClient
from telemetry.sender import Sender
from telemetry.spool import save_cursor


@pytest.fixture
def open_umask():
    """The most permissive umask: whatever stays private, the SDK made private."""
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def today_spool(raw):
    return raw / f"events_{time.strftime('%Y%m%d', time.gmtime())}.ndjson"


def test_spool_dead_letters_cursor_and_lock_are_0600_in_0700_directories(fake_ingest, sdk_env, monkeypatch,
                                                                            open_umask):
    monkeypatch.setenv("TELEMETRY_BASE_DIR", str(sdk_env / "deeper"))  # two directories to create
    monkeypatch.setenv("TELEMETRY_API_URL", fake_ingest.url)
    fake_ingest.reject_if = lambda line: "nope" if line["kind"] == "event" else None
    client = TelemetryClient()
    with client.track_run("a", "j") as ctx:
        ctx.log_event("rejected", 1)
    assert client.flush(timeout=20) == 0
    raw = sdk_env / "deeper" / "raw"
    files = sorted(p.name for p in raw.iterdir())
    assert [n.split("_")[0] for n in files] == [".sender.lock", "cursor.json", "events", "rejected"]
    assert {n: mode(raw / n) for n in files} == {n: 0o600 for n in files}
    assert mode(sdk_env / "deeper") == 0o700 and mode(raw) == 0o700


def test_a_symlink_in_place_of_the_spool_file_is_not_written_through(sdk_env, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    raw = sdk_env / "raw"
    raw.mkdir(parents=True)
    today_spool(raw).symlink_to(victim)
    client = TelemetryClient()
    client.end_run(client.start_run("a", "j"))  # never raises
    assert victim.read_text() == "precious\n"
    assert client.status()["records_lost"] == 2
    client.flush(timeout=0.5)  # nor is it read: its content would go to the console or the dead letters
    assert not list(raw.glob("rejected_*")) and client.status()["pending"] == 0


def test_a_symlink_in_place_of_the_cursor_is_neither_read_nor_written_through(fake_ingest, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    today_spool(raw).write_bytes(b'{"v":1,"id":"l1","kind":"heartbeat"}\n{"v":1,"id":"l2","kind":"heartbeat"}\n')
    victim = tmp_path / "victim.json"
    # Followed, this "cursor" would mark every line as delivered: they would never be sent.
    victim.write_text(json.dumps({"files": {today_spool(raw).name: 10**6}}))
    (raw / "cursor.json").symlink_to(victim)
    sender = Sender(raw, fake_ingest.url, flush_timeout=0)
    assert sender.deliver_until(time.monotonic() + 20, stop_on_failure=False) == 0
    sender.release_lock()
    assert sorted(fake_ingest.lines) == ["l1", "l2"]
    assert json.loads(victim.read_text())["files"] == {today_spool(raw).name: 10**6}
    assert not (raw / "cursor.json").is_symlink()


def test_the_cursors_temporary_file_has_an_unpredictable_name(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    for guess in (f".cursor.json.{os.getpid()}.tmp", "cursor.json.tmp", ".cursor.json.tmp"):
        (raw / guess).symlink_to(victim)
    save_cursor(raw, {"files": {"events_20261204.ndjson": 3}})
    assert victim.read_text() == "precious\n"
    assert json.loads((raw / "cursor.json").read_text())["files"] == {"events_20261204.ndjson": 3}
    assert mode(raw / "cursor.json") == 0o600


def test_a_symlink_in_place_of_the_dead_letter_file_is_not_written_through(fake_ingest, sdk_env, monkeypatch,
                                                                             tmp_path):
    monkeypatch.setenv("TELEMETRY_API_URL", fake_ingest.url)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    raw = sdk_env / "raw"
    raw.mkdir(parents=True)
    (raw / f"rejected_{time.strftime('%Y%m%d', time.gmtime())}.ndjson").symlink_to(victim)
    fake_ingest.reject_if = lambda line: "nope"
    client = TelemetryClient()
    client.end_run(client.start_run("a", "j"))
    client.flush(timeout=20)
    assert victim.read_text() == "precious\n"
