"""Files the console creates are readable by their owner only, under a default umask:
the database and its -wal/-shm, the secret key, lock files, backups. Real `serve` and
`python -m console backup`."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.helpers import ConsoleProcess, free_port
from tests.security.conftest import run_body

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def default_umask():
    """The umask most systems start processes with: group and others may read."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """Permission bits of every file and directory under `root` (and of `root`)."""
    out = {str(root): stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return out


def assert_private(found: dict[str, int]) -> None:
    shared = {name: oct(mode) for name, mode in found.items() if mode & 0o077}
    assert not shared, f"readable beyond the owner: {shared}"


@pytest.mark.parametrize("journal", ["WAL", "DELETE"])
def test_serve_and_backup_create_owner_only_files(tmp_path, default_umask, journal):
    data = tmp_path / "data"  # does not exist yet: the console makes it
    base = tmp_path / "base"  # the base directory wins for the console's own files: secret key, backups
    env = {"TELEMETRY_BASE_DIR": str(tmp_path / "base"), "TELEMETRY_DB_PATH": str(data / "telemetry.sqlite"),
           "TELEMETRY_SECRET_KEY": "", "TELEMETRY_API_PORT": str(free_port()), "TELEMETRY_DB_JOURNAL_MODE": journal}
    console = ConsoleProcess(env, tmp_path / "console.log")
    console.start(timeout=60)
    try:
        assert requests.post(console.url + "/api/v1/runs", json=run_body(), timeout=30).status_code == 201
        assert requests.get(console.url + "/login", timeout=30).status_code == 200  # the secret key is made
        while_serving = modes(data)
        if journal == "WAL":
            assert {"telemetry.sqlite-wal", "telemetry.sqlite-shm"} <= set(while_serving), sorted(while_serving)
        assert_private(while_serving)
        own_files = modes(base)
        assert any(name.endswith("secret_key") for name in own_files), sorted(own_files)
        assert_private(own_files)
    finally:
        console.stop()
    for compress in ("false", "true"):
        backup = subprocess.run([sys.executable, "-m", "console", "backup"], cwd=ROOT,
                                env={**console.env, "TELEMETRY_BACKUP_COMPRESS": compress},
                                capture_output=True, text=True, timeout=300)
        assert backup.returncode == 0, backup.stderr
    made = modes(base / "backups")
    assert {name.split(".", 1)[1] for name in made if name.startswith("telemetry-")} == {"sqlite", "sqlite.gz"}
    assert_private(made)
    assert [name for name in made if name.startswith(".")] == []  # no temporary file left behind
