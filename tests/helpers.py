"""Helpers for tests that run real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ConsoleProcess:
    """`python -m console serve` as a child process, with its log in a file."""

    def __init__(self, env: dict[str, str], log_path: Path, args: tuple[str, ...] = (),
                 stderr_path: Path | None = None):
        self.env = {
            **os.environ,
            "TELEMETRY_SCHEDULER_ENABLED": "false",
            "TELEMETRY_API_HOST": "127.0.0.1",
            **env,
        }
        self.port = int(self.env["TELEMETRY_API_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.args = args
        self.stderr_path = stderr_path  # stderr apart from stdout, when given
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.log_path, "ab")
        errors = open(self.stderr_path, "ab") if self.stderr_path else subprocess.STDOUT
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "console", "serve", *self.args],
            cwd=ROOT, env=self.env, stdout=log, stderr=errors, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"console exited with {self.proc.returncode}: {self.log()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"console did not answer /health within {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL the whole process group (gunicorn master and workers)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
