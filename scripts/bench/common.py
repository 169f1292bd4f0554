"""What the console benchmarks share: a free port, the real console's start and stop."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "sdk"))

from telemetry.models import new_id as _sdk_id  # noqa: E402

# event_id and line id as our SDK makes them (UUID v7, time-ordered), or random
# (UUID v4) as many other clients send them: random keys land on random index pages.
ID_KINDS = {"uuid7": _sdk_id, "uuid4": lambda: str(uuid.uuid4())}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Return once GET /health answers 200; exit the benchmark if the console dies or hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"console exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("console did not become healthy")


def start_console(env: dict[str, str], log: Path) -> subprocess.Popen:
    """`python -m console serve` with `env` (TELEMETRY_API_PORT set), healthy, its output in `log`."""
    proc = subprocess.Popen([sys.executable, "-m", "console", "serve"], cwd=ROOT, env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    wait_healthy(int(env["TELEMETRY_API_PORT"]), proc)
    return proc


def stop_console(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


def empty_postgres(url: str) -> None:
    """Empty every table but alembic_version (the schema stays)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )).scalars().all()
        if tables:
            conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
    engine.dispose()
