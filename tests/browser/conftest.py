"""Browser tests: Debian's Chromium driven by Playwright against the real `python -m console serve`.

Never `playwright install`: the browser is /usr/bin/chromium (apt). Every page a test
opens fails the test on a console error or an uncaught exception (CSP violations show
as console errors). Screenshots go to build/screenshots/.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.helpers import ROOT, ConsoleProcess, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SCREENSHOTS = ROOT / "build" / "screenshots"
TOKEN = "browser-test-token"


def start_console(base: Path, **extra: str) -> ConsoleProcess:
    """A real console on SQLite under `base`, on a free port."""
    base.mkdir(parents=True, exist_ok=True)
    env = {
        "TELEMETRY_BASE_DIR": str(base),
        "TELEMETRY_DB_PATH": str(base / "telemetry.sqlite"),
        "TELEMETRY_SECRET_KEY": "browser-secret",
        "TELEMETRY_API_PORT": str(free_port()),
        "TELEMETRY_API_THREADS": "4",
        **extra,
    }
    process = ConsoleProcess(env, base / "console.log")
    process.start()
    return process


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (never `playwright install`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = start_console(tmp_path_factory.mktemp("browser-console"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    process = start_console(tmp_path_factory.mktemp("browser-auth"),
                            TELEMETRY_API_AUTH_ENABLED="true", TELEMETRY_API_AUTH_TOKEN=TOKEN)
    yield process
    process.stop()


@pytest.fixture
def console_errors():
    return []


@pytest.fixture
def page(browser, console_errors, request):
    """A fresh browser page that records console errors; the test fails on any."""
    context = browser.new_context(viewport={"width": 1360, "height": 860}, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("console", lambda msg: console_errors.append(f"console.{msg.type}: {msg.text}")
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console_errors.append(f"uncaught: {exc}"))
    yield page
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"FAILED-{request.node.name}.png"), full_page=True, caret="initial")
    context.close()
    assert not console_errors, "errors in the browser console:\n" + "\n".join(console_errors)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def shot(page, name: str) -> Path:
    """Save a screenshot under build/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, caret="initial")  # "hide" injects a style: CSP
    return path


def ago(**delta) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def run_record(**overrides) -> dict:
    uid = uuid.uuid4().hex[:12]
    return {
        "event_id": f"evt-{uid}",
        "run_id": f"run-{uid}",
        "agent_name": "indexer",
        "job_type": "crawl",
        "start_time": ago(minutes=30),
        "end_time": ago(minutes=27),
        "status": "success",
        "duration_ms": 192_000,
        "items_discovered": 120,
        "items_succeeded": 118,
        "items_failed": 2,
        **overrides,
    }


def post_runs(server: ConsoleProcess, records: list[dict], token: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.post(server.url + "/api/v1/runs/batch", json=records, headers=headers, timeout=10)
    assert response.status_code == 201 and response.json()["inserted"] == len(records), response.text
