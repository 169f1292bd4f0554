"""`pip install .` gives a console that upgrades its schema and serves outside the checkout."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
import requests

import console
from tests.helpers import ROOT, free_port


def _checkout_files() -> list[str]:
    """The files a build sees: tracked ones and new ones not ignored."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    return [name for name in listed if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (so no build files land in it)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    for name in _checkout_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(base / "out")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (built,) = (base / "out").glob("local_telemetry_console-*.whl")
    return built


def test_the_wheel_holds_every_package_the_templates_static_files_and_migrations(wheel):
    assert wheel.name.startswith(f"local_telemetry_console-{console.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "console").rglob("__init__.py")}
    for package in packages:
        assert f"{package}/__init__.py" in names, f"{package} is not in the wheel: list it in pyproject.toml"
    for folder in ("templates", "static"):
        for path in (ROOT / "console" / folder).iterdir():
            assert f"console/{folder}/{path.name}" in names
    for path in (ROOT / "migrations" / "versions").glob("*.py"):
        assert f"console/migrations/versions/{path.name}" in names
    assert {"console/migrations/env.py", "console/migrations/script.py.mako"} <= names
    metadata = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert "Requires-Python: >=3.11" in metadata
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert f"Requires-Dist: {line.strip()}" in metadata


def test_installed_console_upgrades_and_serves_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # The dependencies come from the project's venv, after the fresh venv's own packages.
    own = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip())
    (own / "zz_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH" and not key.startswith("TELEMETRY_")}
    env.update(TELEMETRY_DB_PATH=str(elsewhere / "data" / "telemetry.sqlite"), TELEMETRY_BASE_DIR=str(elsewhere),
               TELEMETRY_API_PORT=str(free_port()), TELEMETRY_SCHEDULER_ENABLED="false")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=120)

    where = run("-c", "import console; print(console.__file__)")
    assert where.returncode == 0 and where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    assert run("-m", "console", "--version").stdout.strip() == f"local-telemetry-console {console.__version__}"
    upgraded = run("-m", "console", "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    current = run("-m", "console", "db", "current").stdout.strip()
    assert current and current == upgraded.stdout.strip().removeprefix("schema at ")

    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([str(python), "-m", "console", "serve"], cwd=elsewhere, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{env['TELEMETRY_API_PORT']}"
    try:
        deadline = time.monotonic() + 60  # a hang guard: it answers within a few seconds
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = requests.get(url + "/health", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.2)
        assert health is not None and health.status_code == 200, (tmp_path / "serve.log").read_text()[-3000:]
        page = requests.get(url + "/", timeout=10)
        assert page.status_code == 200 and "<!doctype html>" in page.text  # templates from the package
        assert requests.get(url + "/static/console.css", timeout=10).status_code == 200
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        log.close()
