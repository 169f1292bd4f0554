"""The command line as a user meets it: --version, help, progress on a terminal only, log settings."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from datetime import timedelta

import pytest

import console
from console.core.timeutil import utcnow
from console.jobs.scheduler import ALL_JOBS
from tests.helpers import ROOT
from tests.jobs.conftest import add_events, insert_runs, run_row


def _env(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'sdk'}:{ROOT}", **env, **extra}


def run_piped(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=180)


def run_on_terminal(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (stdout still a pipe); return code, stdout, terminal text."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "console", *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=slave, text=True)
    os.close(slave)
    chunks = []
    while True:  # read the terminal while the command runs, so that it never blocks on a full pty
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the command ended and closed its side
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read()
    code = proc.wait(timeout=180)
    proc.stdout.close()
    os.close(master)
    return code, out, b"".join(chunks).decode()


def test_version_prints_the_console_version():
    done = run_piped(_env({}), "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"local-telemetry-console {console.__version__}"


def test_jobs_run_help_names_every_job():
    done = run_piped(_env({}), "jobs", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for job in ALL_JOBS:
        assert job in text


def no_progress(stderr: str) -> bool:
    """Piped stderr carries log lines (TELEMETRY_LOG_LEVEL) but no progress lines."""
    return not any(line.startswith("... ") for line in stderr.splitlines())


def _old_runs(db, count: int = 30):
    old = utcnow() - timedelta(days=40)
    rows = [run_row(created_at=old) for _ in range(count)]
    insert_runs(db, rows)
    add_events(db, rows[0], 3)


def test_retention_shows_progress_on_a_terminal_and_stays_quiet_in_a_pipe(env, db):
    _old_runs(db)
    code, out, terminal = run_on_terminal(_env(env), "retention", "--days", "10", "--batch-size", "10")
    assert code == 0, terminal
    assert json.loads(out)["runs_deleted"] == 30
    assert "... retention: deleting runs created before" in terminal
    assert "... retention: 30 runs and 3 events deleted" in terminal

    _old_runs(db, 5)
    done = run_piped(_env(env), "retention", "--days", "10")
    assert done.returncode == 0 and json.loads(done.stdout)["runs_deleted"] == 5
    assert no_progress(done.stderr) and "job retention succeeded" in done.stderr  # INFO logs still


def test_backup_and_restore_show_progress_on_a_terminal_only(env, db, tmp_path):
    insert_runs(db, [run_row()])
    code, out, terminal = run_on_terminal(_env(env), "backup", "--dir", str(tmp_path / "b"))
    assert code == 0, terminal
    path = json.loads(out)["path"]
    assert "... backup:" in terminal and "written" in terminal
    piped = run_piped(_env(env), "backup", "--dir", str(tmp_path / "b"))
    assert piped.returncode == 0 and no_progress(piped.stderr)

    args = ["restore", path, "--force"]
    if "TELEMETRY_DB_PATH" in env:
        args += ["--to", str(tmp_path / "restored.sqlite")]
    code, out, terminal = run_on_terminal(_env(env), *args)
    assert code == 0, terminal
    assert "... restore: checking" in terminal
    piped = run_piped(_env(env), *args)
    assert piped.returncode == 0 and no_progress(piped.stderr) and json.loads(piped.stdout)["from"] == path


def test_rollup_rebuild_shows_its_steps_on_a_terminal_only(env, db):
    insert_runs(db, [run_row()])
    code, out, terminal = run_on_terminal(_env(env), "rollups", "rebuild")
    assert code == 0 and "rollups rebuilt" in out
    assert "... rollups: recomputing the hours" in terminal and "... rollups: recomputing the totals" in terminal
    piped = run_piped(_env(env), "rollups", "rebuild")
    assert piped.returncode == 0 and no_progress(piped.stderr)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_cli_honours_the_log_level_and_format(env, db):
    _old_runs(db, 3)
    done = run_piped(_env(env, TELEMETRY_LOG_LEVEL="DEBUG", TELEMETRY_LOG_FORMAT="json"), "retention", "--days", "10")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert any(e["logger"] == "console.jobs.retention" and e["level"] == "DEBUG" for e in lines)
    assert all(set(e) >= {"time", "level", "logger", "message"} for e in lines)

    _old_runs(db, 3)
    quiet = run_piped(_env(env, TELEMETRY_LOG_LEVEL="WARNING", TELEMETRY_LOG_FORMAT="json"),
                      "retention", "--days", "10")
    assert quiet.returncode == 0 and quiet.stderr == ""

    bad = run_piped(_env(env, TELEMETRY_LOG_LEVEL="LOUD"), "retention", "--days", "10")
    assert bad.returncode == 2 and "TELEMETRY_LOG_LEVEL" in bad.stderr
