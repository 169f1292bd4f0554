"""A throw-away PostgreSQL server of the test's own (never the shared one): initdb + pg_ctl."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers import free_port

try:
    from pgserver._commands import POSTGRES_BIN_PATH as BIN
except ImportError:  # pragma: no cover - pgserver is a dev dependency
    BIN = Path("/usr/lib/postgresql/15/bin")

RUN_AS = "pgserver"  # initdb refuses root; pgserver's own convention


def _ensure_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", RUN_AS], check=True)
    return RUN_AS


class ThrowawayPostgres:
    """One PostgreSQL cluster in a temporary directory on a free loopback port."""

    def __init__(self):
        self.user = _ensure_user()
        self.root = Path(tempfile.mkdtemp(prefix="lt-rel-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.logfile = self.root / "postgres.log"
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run([str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.root}'\n"
                "fsync = off\nmax_connections = 60\n"  # fsync off: the OS survives; commits stay synchronous
            )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(args, user=self.user, check=check, capture_output=True, text=True, timeout=60,
                              cwd=str(self.root))

    def start(self) -> None:
        self._run([str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "30", "start"])

    def stop(self, mode: str = "fast") -> None:
        self._run([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop"], check=False)

    def restart(self, down_seconds: float = 0.0, mode: str = "immediate") -> None:
        self.stop(mode)
        time.sleep(down_seconds)
        self.start()

    def create_database(self, name: str) -> str:
        self._run([str(BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c",
                   f'CREATE DATABASE "{name}"'])
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
