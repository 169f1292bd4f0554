"""No Docker engine here: read the Dockerfile and run what it runs, with its environment."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import ConsoleProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def dockerfile_env() -> dict[str, str]:
    block = re.search(r"^ENV (.+?)(?=^\S)", DOCKERFILE, re.M | re.S).group(1)
    pairs = re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " "))
    return dict(pairs)


def json_instruction(prefix: str) -> list[str]:
    """The JSON-form command on the line that starts with `prefix`."""
    line = re.search(rf"^{prefix} (\[.+\])\s*$", DOCKERFILE, re.M).group(1)
    return json.loads(line)


def test_image_is_slim_non_root_with_pg_client_and_data_volume():
    assert DOCKERFILE.startswith("#") and "FROM python:3.11-slim" in DOCKERFILE
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, re.M)
    assert "postgresql-client" in DOCKERFILE
    assert 'VOLUME ["/data"]' in DOCKERFILE
    env = dockerfile_env()
    assert env["TELEMETRY_BASE_DIR"] == "/data" and env["TELEMETRY_API_HOST"] == "0.0.0.0"
    for path in re.findall(r"^COPY (\S+)", DOCKERFILE, re.M):
        assert (ROOT / path).exists(), f"COPY of a missing path: {path}"


def test_the_image_command_serves_and_its_healthcheck_passes(tmp_path):
    env = dockerfile_env()
    env.update(TELEMETRY_BASE_DIR=str(tmp_path / "data"), TELEMETRY_API_PORT=str(free_port()))
    command = json_instruction("CMD")
    assert command == ["python", "-m", "console", "serve"]
    console = ConsoleProcess(env, tmp_path / "log")
    console.start()
    try:
        check = json_instruction(r"\s+CMD")
        check[0] = sys.executable
        result = subprocess.run(check, env={**os.environ, **env}, timeout=30, capture_output=True)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "data" / "db" / "telemetry.sqlite").exists()
    finally:
        console.stop()
