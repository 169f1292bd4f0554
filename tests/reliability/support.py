"""Helpers for the fault-injection tests: consoles, agents, the CLI, direct reads of the store."""


from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.helpers import ROOT, ConsoleProcess, free_port

SOAK = os.environ.get("TELEMETRY_SOAK") == "1"
FIGURES_DIR = ROOT / "build" / "reliability"
TELEMETRY_CLI = str(Path(sys.executable).with_name("telemetry"))


def deselect_soak_unless_asked(config, items) -> None:
    """Drop soak tests from the run unless TELEMETRY_SOAK=1 (shared by tests/security and tests/fuzz)."""
    if os.environ.get("TELEMETRY_SOAK") == "1":
        return
    soak = [item for item in items if item.get_closest_marker("soak")]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if not item.get_closest_marker("soak")]


def record_figures(name: str, figures: dict) -> None:
    """Keep what a test measured (build/reliability/<name>.json) and print it."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    figures = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "load_average": os.getloadavg()[0], **figures}
    (FIGURES_DIR / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str))
    print(f"\n[figures] {name}: {json.dumps(figures, default=str)}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def sqlite_env(template: Path, tmp_path: Path, journal: str = "DELETE", synchronous: str = "FULL") -> dict[str, str]:
    """TELEMETRY_* for a console on a fresh copy of the migrated SQLite template."""
    path = tmp_path / "db" / "telemetry.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, path)
    return {
        "TELEMETRY_DB_PATH": str(path),
        "TELEMETRY_BASE_DIR": str(tmp_path / "console-base"),
        "TELEMETRY_SECRET_KEY": "reliability",
        "TELEMETRY_DB_JOURNAL_MODE": journal,
        "TELEMETRY_DB_SYNCHRONOUS": synchronous,
    }


def make_console(env: dict[str, str], tmp_path: Path, port: int | None = None, name: str = "console") -> ConsoleProcess:
    """A ConsoleProcess (not started) on `port` (a free one by default)."""
    return ConsoleProcess({**env, "TELEMETRY_API_PORT": str(port or free_port())}, tmp_path / f"{name}.log")


def agent_env(base: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "METRICS_API", "AGENT_METRICS"))}
    env.update(TELEMETRY_BASE_DIR=str(base), TELEMETRY_API_URL=url, TELEMETRY_GIT_DETECT="false",
               TELEMETRY_HEARTBEAT_SECONDS="0", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return env


def telemetry_cli(base: Path, url: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the `telemetry` command against a base dir and console."""
    return subprocess.run([TELEMETRY_CLI, *args], env=agent_env(base, url), capture_output=True, text=True,
                          timeout=timeout)


def sqlite_rows(path: Path | str, sql: str, params: tuple = ()) -> list[tuple]:
    """Read the console's SQLite file directly, as people do with `sqlite3`."""
    conn = sqlite3.connect(str(path), timeout=30)  # read-write: a hot journal left by a kill gets rolled back
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def integrity_check(path: Path | str) -> str:
    conn = sqlite3.connect(str(path), timeout=30)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def stale_event_ids(url: str) -> set[str]:
    resp = requests.get(url + "/api/v1/runs/stale", params={"older_than_minutes": 0, "limit": 10000}, timeout=30)
    resp.raise_for_status()
    return {row["event_id"] for row in resp.json()}


def wait_until(predicate, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def store_rows(env: dict[str, str], sql: str, params: dict | None = None) -> list[tuple]:
    """Run one read query on the console's store, SQLite or PostgreSQL, from outside the console."""
    if env.get("TELEMETRY_DB_PATH"):
        conn = sqlite3.connect(env["TELEMETRY_DB_PATH"], timeout=30)
        try:
            return conn.execute(sql, params or {}).fetchall()
        finally:
            conn.close()
    import sqlalchemy as sa

    engine = sa.create_engine(env["TELEMETRY_DATABASE_URL"], poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params or {})]
    finally:
        engine.dispose()
