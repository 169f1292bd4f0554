"""docs/migrating.md tells the truth: its names are real, and an older file is adopted and listed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from console.app import create_app
from console.cli import main as cli_main
from console.cli.registry import COMMANDS
from console.core.settings import documented_variables, load_settings
from tests.console.legacy import build_legacy_file

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "migrating.md"
SDK = REPO / "sdk" / "telemetry"
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")

assert cli_main  # importing it registers every command


def table_rows(heading: str) -> list[list[str]]:
    """The body rows of the first table under `heading` in docs/migrating.md, as cells."""
    text = DOC.read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def sdk_reads(name: str) -> bool:
    """True when the SDK's code names the variable as a string literal."""
    return any(f'"{name}"' in path.read_text() for path in SDK.rglob("*.py"))


def is_real_variable(name: str) -> bool:
    return name in documented_variables() or sdk_reads(name)


def test_every_name_listed_as_here_is_a_real_setting_and_every_older_name_maps_to_something():
    rows = table_rows("3. Environment names")
    assert len(rows) >= 20
    unknown, unmapped = [], []
    for older, here, _why in rows:
        assert len(ticked(older)) == 1 and ENV_NAME.match(ticked(older)[0]), older
        targets = ticked(here)
        if not targets and not here.startswith("none: "):
            unmapped.append(older)
        for target in targets:
            if ENV_NAME.match(target):
                if not is_real_variable(target):
                    unknown.append(target)
            elif target.split()[:3] == ["python", "-m", "console"]:
                if target.split()[3] not in COMMANDS:
                    unknown.append(target)
            else:
                unknown.append(target)
    assert not unknown, f"named as here but not a console setting, SDK variable or command: {unknown}"
    assert not unmapped, f"older names with no equivalent and no reason: {unmapped}"


def sdk_environment_names() -> set[str]:
    """Every variable the SDK reads: os.environ.get / os.getenv / its _env_* helpers."""
    pattern = re.compile(r'(?:environ\.get|getenv|_env_\w+)\(\s*"([A-Z][A-Z0-9_]*)"')
    return {name for path in SDK.rglob("*.py") for name in pattern.findall(path.read_text())}


def test_every_older_name_the_sdk_still_reads_is_in_the_table():
    listed = {ticked(row[0])[0] for row in table_rows("3. Environment names")}
    operating_system = {"HOME", "LOCALAPPDATA", "XDG_DATA_HOME"}
    older = {name for name in sdk_environment_names() if not name.startswith("TELEMETRY_")} - operating_system
    assert {"AGENT_METRICS_DIR", "METRICS_API_URL", "AGENT_OWNER"} <= older
    assert older <= listed, f"the SDK reads older names the doc does not list: {older - listed}"


def test_a_name_that_is_no_setting_would_be_caught():
    assert is_real_variable("TELEMETRY_DB_PATH") and is_real_variable("AGENT_OWNER")
    assert not is_real_variable("TELEMETRY_NO_SUCH_THING")


def test_every_command_and_script_the_scripts_table_names_exists():
    rows = table_rows("4. Scripts")
    assert len(rows) >= 10
    missing = []
    for _older, here, _notes in rows:
        assert ticked(here), here
        for target in ticked(here):
            words = target.split()
            if words[:3] == ["python", "-m", "console"]:
                if words[3] not in COMMANDS:
                    missing.append(target)
            elif target.startswith("scripts/"):
                if not (REPO / target).is_file():
                    missing.append(target)
            elif target.startswith("telemetry."):
                name = target.rpartition(".")[2]
                if f"class {name}" not in (SDK / "client.py").read_text():
                    missing.append(target)
            else:
                missing.append(target)
    assert not missing, missing


def test_readme_links_the_migration_guide():
    assert "(docs/migrating.md)" in (REPO / "README.md").read_text()


@pytest.fixture
def adopted_file(tmp_path) -> tuple[Path, dict[str, int]]:
    """A v7 file from tests/fixtures/legacy_v7.sql with a few rows, adopted by the real CLI."""
    path = tmp_path / "db" / "telemetry.sqlite"
    path.parent.mkdir()
    counts = build_legacy_file(path, runs=12)
    env = {**os.environ, "TELEMETRY_DB_PATH": str(path), "TELEMETRY_BASE_DIR": str(tmp_path / "base")}
    result = subprocess.run([sys.executable, "-m", "console", "db", "upgrade"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return path, counts


def test_an_adopted_v7_file_is_listed_by_the_api(adopted_file, tmp_path):
    path, counts = adopted_file
    settings = load_settings({"TELEMETRY_DB_PATH": str(path), "TELEMETRY_BASE_DIR": str(tmp_path / "base"),
                              "TELEMETRY_SECRET_KEY": "test"})
    app = create_app(settings, {"TESTING": True})
    try:
        client = app.test_client()
        listed = client.get("/api/v1/runs?limit=1000")
        assert listed.status_code == 200
        event_ids = [run["event_id"] for run in listed.get_json()]
        expected = {f"evt-{i:06d}" for i in range(12)} | {"evt-default"}
        assert len(event_ids) == counts["agent_runs"] and set(event_ids) == expected
        # Newest first: the row the older tool's column default dated is the newest.
        assert event_ids[0] == "evt-default"

        # The older filters and aliases work on the adopted rows.
        failed = client.get("/api/v1/runs?status=failed&limit=1000").get_json()
        stored_failures = [run for run in listed.get_json() if run["status"] == "failure"]
        assert [r["event_id"] for r in failed] == [r["event_id"] for r in stored_failures]

        one = client.get("/api/v1/runs/evt-000003").get_json()
        assert one["run_id"] == "run-1" and one["agent_name"] == "agent-3"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", one["created_at"])
        # run-1's event now hangs on the newest run of that run_id (evt-000005).
        assert client.get("/api/v1/runs/evt-000003/events").get_json() == []
        events = client.get("/api/v1/runs/evt-000005/events")
        assert events.status_code == 200 and [e["event_type"] for e in events.get_json()] == ["checkpoint"]
    finally:
        app.extensions["telemetry_db"].dispose()
