"""The jobs' CLI commands and scripts run the same code and record it in the history."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pytest
import sqlalchemy as sa

from console.cli.main import main
from console.core.timeutil import utcnow
from console.jobs import history
from console.store.models import agent_runs
from tests.helpers import ROOT
from tests.jobs.conftest import insert_runs, run_row


@pytest.fixture
def cli(env, monkeypatch, capsys):
    def run(*argv: str, **extra: str):
        for key, value in {**env, **extra}.items():
            monkeypatch.setenv(key, value)
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_retention_dry_run_then_for_real_with_days(cli, db):
    now = utcnow()
    insert_runs(db, [run_row(created_at=now - timedelta(days=20)), run_row(created_at=now)])
    code, out, _ = cli("retention", "--days", "10", "--dry-run")
    assert code == 0 and json.loads(out)["runs_to_delete"] == 1
    code, out, _ = cli("retention", "--days", "10")
    assert code == 0 and json.loads(out)["runs_deleted"] == 1
    with db.read() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(agent_runs)).scalar_one() == 1
        (run,) = history.recent_runs(session, "retention")
    assert run["trigger"] == "manual" and run["outcome"] == "success"


def test_jobs_list_and_run(cli, db, settings):
    code, out, _ = cli("jobs", "list")
    # Backups always; reconciling rollups after direct writes to the file on SQLite only.
    expected = ["backup", "rollup_reconcile"] if settings.is_sqlite else ["backup"]
    assert code == 0 and [j["job"] for j in json.loads(out)] == expected
    code, out, _ = cli("jobs", "run", "stale_sweep", TELEMETRY_STALE_SWEEP_MINUTES="5")
    assert code == 0 and json.loads(out)["marked_failed"] == 0
    code, out, err = cli("jobs", "run", "backup", "--request")  # no scheduler runs (tests/jobs/test_no_scheduler.py)
    assert code == 1 and "requested, but no scheduler is running" in err
    code, _, err = cli("jobs", "run", "nothing")
    assert code == 2 and "backup" in err


def test_export_without_destination_says_so(cli):
    code, _, err = cli("export")
    assert code == 2 and "no export destination" in err


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_failing_backup_exits_non_zero_and_is_recorded(cli, db, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = cli("backup", "--dir", str(blocker))
    assert code == 1 and "backup failed" in err
    with db.read() as session:
        assert history.job_metrics(session)["backup"]["failures"] == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_scripts_wrap_the_commands(env, settings, tmp_path):
    run_env = {"PATH": "/usr/bin:/bin", **env}
    done = subprocess.run([sys.executable, "scripts/backup.py"], cwd=ROOT, env=run_env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    path = json.loads(done.stdout)["path"]
    target = tmp_path / "copy.sqlite"
    done = subprocess.run([sys.executable, "scripts/restore.py", path, "--to", str(target)], cwd=ROOT, env=run_env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    fresh = {**run_env, "TELEMETRY_DB_PATH": str(tmp_path / "new" / "telemetry.sqlite")}
    for script in ("setup_database.py", "retention.py"):
        done = subprocess.run([sys.executable, f"scripts/{script}"], cwd=ROOT, env=fresh, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, (script, done.stderr)
