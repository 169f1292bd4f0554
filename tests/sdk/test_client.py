"""The public API: every call spools one line v1, returns at once, and never raises."""

import ast
import json
import logging
import time
import uuid
from pathlib import Path

import pytest
import telemetry
from telemetry import TelemetryClient, TelemetryConfig
from telemetry.spool import KINDS

SDK_DIR = Path(telemetry.__file__).parent


def spooled(base):
    lines = []
    for path in sorted((base / "raw").glob("events_*.ndjson")):
        lines.extend(json.loads(x) for x in path.read_text().splitlines() if x)
    return lines


def test_every_sdk_file_parses_as_python_39():
    files = sorted(SDK_DIR.rglob("*.py"))
    assert len(files) >= 8
    for path in files:
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))


def test_older_public_names_stay_importable():
    from telemetry import SCHEMA_VERSION, APIPayload, RunContext, RunEvent, RunRecord  # noqa: F401
    from telemetry.helpers import cleanup_on_startup, cleanup_stale_runs  # noqa: F401

    record = RunRecord(run_id="r", agent_name="a", job_type="j", trigger_type="cli", start_time="t")
    assert APIPayload.from_run_record(record).to_dict()["run_id"] == "r"
    assert RunRecord.from_dict(record.to_dict()) == record
    assert isinstance(TelemetryConfig.from_env(), TelemetryConfig)


def test_track_run_spools_started_event_updated_and_ended_lines(sdk_env):
    client = TelemetryClient()
    with client.track_run("agent", "job", product="p", website="w") as ctx:
        ctx.log_event("checkpoint", {"step": 1})
        ctx.set_metrics(items_discovered=10, items_succeeded=9, items_failed=1,
                        metrics_json={"k": 1}, output_summary="done")
    lines = spooled(sdk_env)
    assert [x["kind"] for x in lines] == ["run_started", "event", "run_updated", "run_ended"]
    assert len({x["id"] for x in lines}) == 4
    assert len({x["event_id"] for x in lines}) == 1
    for line in lines:
        assert line["v"] == 1 and line["kind"] in KINDS
        assert line["ts"].endswith("+00:00")
        assert {"run_id", "agent_name", "job_type", "start_time"} <= set(line)
    end = lines[-1]["data"]
    assert end["status"] == "success"
    assert end["items_succeeded"] == 9 and end["metrics_json"] == {"k": 1}
    assert end["product"] == "p" and end["output_summary"] == "done"
    assert end["duration_ms"] >= 0 and end["end_time"].endswith("+00:00")
    assert lines[1]["data"] == {"event_type": "checkpoint", "payload": {"step": 1}}


def test_event_ids_and_line_ids_are_time_ordered_uuid7(sdk_env):
    client = TelemetryClient()
    client.start_run("agent", "job")
    time.sleep(0.002)  # the next millisecond
    client.start_run("agent", "job")
    lines = spooled(sdk_env)
    first, second = lines[0]["event_id"], lines[1]["event_id"]
    ids = [first, second] + [x["id"] for x in lines]
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert first < second  # ids made later sort later: unique indexes grow at their right edge
    assert lines[0]["id"] < lines[1]["id"]
    assert len(set(ids)) == len(ids)


def test_track_run_exception_becomes_failure_with_traceback_and_is_reraised(sdk_env):
    client = TelemetryClient()
    with pytest.raises(ValueError):
        with client.track_run("agent", "job"):
            raise ValueError("boom")
    end = spooled(sdk_env)[-1]["data"]
    assert end["status"] == "failure"
    assert end["error_summary"] == "ValueError: boom"
    assert "Traceback" in end["error_details"] and "boom" in end["error_details"]


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_track_run_interrupt_becomes_cancelled(sdk_env, exc):
    client = TelemetryClient()
    with pytest.raises(exc):
        with client.track_run("agent", "job"):
            raise exc()
    assert spooled(sdk_env)[-1]["data"]["status"] == "cancelled"


def test_nested_track_run_gets_parent_run_id(sdk_env):
    client = TelemetryClient()
    with client.track_run("outer", "job") as outer:
        with client.track_run("inner", "job") as inner:
            pass
        with client.track_run("explicit", "job", parent_run_id="other"):
            pass
    starts = {x["agent_name"]: x["data"] for x in spooled(sdk_env) if x["kind"] == "run_started"}
    assert "parent_run_id" not in starts["outer"]
    assert starts["inner"]["parent_run_id"] == outer.run_id
    assert starts["explicit"]["parent_run_id"] == "other"
    assert inner.run_id != outer.run_id


@pytest.mark.parametrize("alias,canon", [("failed", "failure"), ("completed", "success"),
                                         ("succeeded", "success"), ("canceled", "cancelled"),
                                         ("partial", "partial"), ("nonsense", "failure")])
def test_end_run_normalises_status(sdk_env, alias, canon):
    client = TelemetryClient()
    run_id = client.start_run("a", "j")
    client.end_run(run_id, status=alias, items_succeeded=10)
    end = spooled(sdk_env)[-1]
    assert end["kind"] == "run_ended" and end["data"]["status"] == canon
    assert end["data"]["items_succeeded"] == 10


def test_custom_run_id_validated_and_replaced_when_invalid(sdk_env, caplog):
    client = TelemetryClient()
    assert client.start_run("a", "j", run_id="my-run-1") == "my-run-1"
    for bad in ["x/y", "a\\b", "nul\x00", "x" * 256, ""]:
        with caplog.at_level(logging.WARNING, logger="telemetry"):
            got = client.start_run("a", "j", run_id=bad)
        assert got != bad and got
    metrics = client.get_run_id_metrics()["run_id_metrics"]
    assert metrics["custom_accepted"] == 1
    assert metrics["rejected"] == {"empty": 1, "too_long": 1, "invalid_chars": 3, "total": 5}


def test_unknown_and_invalid_fields_are_warnings_not_exceptions(sdk_env, caplog):
    client = TelemetryClient()
    with caplog.at_level(logging.WARNING, logger="telemetry"):
        run_id = client.start_run("a", "j", bogus=1, items_failed=-1, items_skipped="x",
                                  environment="prod", record_type="run")
    data = spooled(sdk_env)[0]["data"]
    assert data["environment"] == "prod"
    assert "bogus" not in data and "items_failed" not in data and "record_type" not in data
    assert "bogus" in caplog.text and "items_failed" in caplog.text
    client.end_run(run_id)


def test_associate_commit_during_and_after_the_run(sdk_env):
    client = TelemetryClient()
    run_id = client.start_run("a", "j")
    assert client.associate_commit(run_id, "a1b2c3d", "llm", "Bot <b@x>")[0] is True
    client.end_run(run_id)
    ok, msg = client.associate_commit(run_id, "0123456789abcdef", "ci")
    assert ok is True and msg
    commits = [x for x in spooled(sdk_env) if x["kind"] == "commit"]
    assert [c["data"]["commit_hash"] for c in commits] == ["a1b2c3d", "0123456789abcdef"]
    assert commits[0]["data"]["commit_author"] == "Bot <b@x>"
    assert client.associate_commit(run_id, "abc", "llm") == (False, "commit_hash must be 7-40 characters")
    ok, reason = client.associate_commit(run_id, "a1b2c3d", "robot")
    assert ok is False and "commit_source" in reason
    assert client.associate_commit("nope", "a1b2c3d", "llm")[0] is False
    assert client.associate_commit(run_id, "x" * 41, "llm")[0] is False


def test_calls_on_unknown_runs_are_ignored_and_counted(sdk_env):
    client = TelemetryClient()
    client.log_event("missing", "x")
    client.end_run("missing")
    client.update_run("missing", items_failed=1)
    assert client.status()["invalid_calls"] == 3
    assert spooled(sdk_env) == []


def test_disabled_client_is_a_no_op(sdk_env, monkeypatch):
    monkeypatch.setenv("TELEMETRY_DISABLED", "true")
    client = TelemetryClient()
    with client.track_run("a", "j") as ctx:
        ctx.log_event("e")
    assert ctx.run_id
    assert client.flush(0.1) == 0
    assert not (sdk_env / "raw").exists()


def test_bad_environment_values_never_raise(sdk_env, monkeypatch):
    monkeypatch.setenv("TELEMETRY_FLUSH_TIMEOUT", "soon")
    monkeypatch.setenv("TELEMETRY_HEARTBEAT_SECONDS", "-3")
    monkeypatch.setenv("TELEMETRY_SPOOL_FSYNC", "sometimes")
    monkeypatch.setenv("TELEMETRY_API_URL", "ftp://nope")
    config = TelemetryConfig.from_env()
    assert config.flush_timeout == 2.0 and config.heartbeat_seconds == 30.0
    assert config.spool_fsync == "never" and config.api_url == "http://localhost:8765"


def test_internal_errors_are_logged_and_counted_not_raised(sdk_env, monkeypatch):
    client = TelemetryClient()
    run_id = client.start_run("a", "j")

    def explode(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr("telemetry.client.make_line", explode)
    client.log_event(run_id, "e")
    client.end_run(run_id)
    assert client.associate_commit(run_id, "a1b2c3d", "llm")[0] is False
    assert client.status()["internal_errors"] == 3


def test_legacy_environment_names_are_fallbacks(sdk_env, monkeypatch, tmp_path):
    monkeypatch.delenv("TELEMETRY_BASE_DIR")
    monkeypatch.delenv("TELEMETRY_API_URL")
    monkeypatch.setenv("AGENT_METRICS_DIR", str(tmp_path / "legacy"))
    monkeypatch.setenv("METRICS_API_URL", "http://127.0.0.1:1234/")
    monkeypatch.setenv("TELEMETRY_API_AUTH_TOKEN", "tok")
    config = TelemetryConfig.from_env()
    assert config.base_dir == tmp_path / "legacy"
    assert config.api_url == "http://127.0.0.1:1234" and config.api_token == "tok"
    monkeypatch.setenv("TELEMETRY_API_TOKEN", "primary")
    assert TelemetryConfig.from_env().api_token == "primary"


def test_heartbeats_are_spooled_while_a_run_is_open(sdk_env, monkeypatch):
    from conftest import wait_for

    monkeypatch.setenv("TELEMETRY_HEARTBEAT_SECONDS", "0.05")
    client = TelemetryClient()
    run_id = client.start_run("a", "j")
    assert wait_for(lambda: len([x for x in spooled(sdk_env) if x["kind"] == "heartbeat"]) >= 2)
    client.end_run(run_id)
    client.close()
    beats = [x for x in spooled(sdk_env) if x["kind"] == "heartbeat"]
    assert beats[0]["data"] == {} and beats[0]["run_id"] == run_id


def test_git_context_detected_once_and_normalised(sdk_env, monkeypatch, tmp_path):
    from telemetry.gitinfo import detect_git, normalize_repo_url

    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/feature/x\n")
    (repo / ".git" / "refs" / "heads" / "feature").mkdir()
    (repo / ".git" / "refs" / "heads" / "feature" / "x").write_text("a" * 40 + "\n")
    (repo / ".git" / "config").write_text('[remote "origin"]\n\turl = git@github.com:o/r.git\n')
    (repo / "sub").mkdir()
    assert detect_git(str(repo / "sub")) == {
        "git_branch": "feature/x", "git_commit_hash": "a" * 40, "git_repo": "https://github.com/o/r"}
    assert normalize_repo_url("https://user:tok@gitlab.com/g/p.git") == "https://gitlab.com/g/p"
    assert normalize_repo_url("ssh://git@bitbucket.org:22/o/r.git") == "https://bitbucket.org/o/r"
    monkeypatch.setenv("TELEMETRY_GIT_DETECT", "true")
    monkeypatch.chdir(repo / "sub")
    client = TelemetryClient()
    run_id = client.start_run("a", "j", git_branch="mine")
    data = spooled(sdk_env)[0]["data"]
    assert data["git_repo"] == "https://github.com/o/r" and data["git_branch"] == "mine"
    client.end_run(run_id)


@pytest.mark.parametrize("name", ["TELEMETRY_API_ENABLED", "METRICS_API_ENABLED"])
def test_api_disabled_spools_without_posting_and_sync_delivers(sdk_env, fake_ingest, monkeypatch, name):
    from telemetry.cli import main

    monkeypatch.setenv("TELEMETRY_API_URL", fake_ingest.url)
    monkeypatch.setenv(name, "false")
    client = TelemetryClient()
    client.end_run(client.start_run("a", "j"))
    assert client.flush(2.0) == 2  # nothing posted, however long it may take
    assert fake_ingest.requests == [] and len(spooled(sdk_env)) == 2
    assert client.status()["sender_active"] is False
    assert main(["sync", "--timeout", "20"]) == 0
    assert len(fake_ingest.lines) == 2


def test_the_new_api_enabled_name_wins_over_the_older_one(sdk_env, monkeypatch):
    monkeypatch.setenv("METRICS_API_ENABLED", "false")
    monkeypatch.setenv("TELEMETRY_API_ENABLED", "true")
    assert TelemetryConfig.from_env().api_enabled is True
    monkeypatch.delenv("TELEMETRY_API_ENABLED")
    assert TelemetryConfig.from_env().api_enabled is False
