#!/usr/bin/env python
"""Refresh docs/screenshots/: start a console on a throw-away SQLite database, fill it
with a demo dataset through the JSON API, and photograph each page (light and dark)
with Debian's Chromium driven by Playwright (never `playwright install`).

Usage: .venv/bin/python scripts/screenshots.py [--out docs/screenshots]   (or: make screenshots)
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
AGENTS = {
    "docs-indexer": ("crawl", 95_000, 0.93),
    "pr-reviewer": ("review", 210_000, 0.81),
    "nightly-etl": ("load", 1_900_000, 0.97),
    "sheet-sync": ("export", 12_000, 0.88),
}
TRACEBACK = """Traceback (most recent call last):
  File "/srv/agents/pr_reviewer/main.py", line 88, in review
    verdict = llm.complete(prompt, timeout=120)
  File "/srv/agents/lib/llm.py", line 41, in complete
    raise TimeoutError(f"model did not answer within {timeout} s")
TimeoutError: model did not answer within 120 s"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_console(base: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "TELEMETRY_BASE_DIR": str(base), "TELEMETRY_DB_PATH": str(base / "demo.sqlite"),
           "TELEMETRY_API_PORT": str(port), "TELEMETRY_API_HOST": "127.0.0.1", "TELEMETRY_SECRET_KEY": "demo",
           "TELEMETRY_SCHEDULER_ENABLED": "false", "TELEMETRY_API_AUTH_ENABLED": "false"}
    log = open(base / "console.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "console", "serve"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit(f"the console did not start; see {base / 'console.log'}")


def demo_runs(now: datetime) -> list[dict]:
    """About 30 days of runs for four agents, a few failures, a few still running."""
    rng = random.Random(7)
    runs = []
    for name, (job, typical_ms, success_rate) in AGENTS.items():
        for day in range(30):
            for _ in range(rng.randint(2, 6)):
                start = now - timedelta(days=day, hours=rng.uniform(0.3, 23))
                duration = int(typical_ms * rng.lognormvariate(0, 0.35))
                roll = rng.random()
                status = "success" if roll < success_rate else rng.choice(["failure", "failure", "partial", "timeout"])
                found = rng.randint(20, 400)
                failed = 0 if status == "success" else rng.randint(1, max(1, found // 10))
                run = {
                    "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "run_id": f"{name}-{start:%Y%m%d-%H%M%S}",
                    "agent_name": name, "job_type": job,
                    "start_time": start.isoformat(), "created_at": start.isoformat(),
                    "end_time": (start + timedelta(milliseconds=duration)).isoformat(),
                    "status": status, "duration_ms": duration,
                    "items_discovered": found, "items_succeeded": found - failed, "items_failed": failed,
                    "host": rng.choice(["build-01", "build-02"]), "environment": "prod",
                    "git_repo": "https://github.com/acme/agents.git", "git_branch": "main",
                    "metrics_json": {"tokens_in": rng.randint(1000, 90000), "tokens_out": rng.randint(100, 9000)},
                }
                if status != "success":
                    run["error_summary"] = rng.choice([
                        "TimeoutError: model did not answer within 120 s",
                        "HTTPError: 502 Bad Gateway from sheets.googleapis.com",
                        "ValueError: page 17 has no title",
                    ])
                    run["error_details"] = TRACEBACK
                runs.append(run)
    for hours, name in ((7, "pr-reviewer"), (5, "nightly-etl"), (3.5, "docs-indexer")):
        start = now - timedelta(hours=hours)
        runs.append({"event_id": str(uuid.UUID(int=rng.getrandbits(128))), "run_id": f"{name}-{start:%Y%m%d-%H%M%S}",
                     "agent_name": name, "job_type": AGENTS[name][0], "start_time": start.isoformat(),
                     "created_at": start.isoformat(), "status": "running", "host": "build-02"})
    start = now - timedelta(minutes=4)
    runs.append({"event_id": "demo-live-run", "run_id": f"docs-indexer-{start:%Y%m%d-%H%M%S}",
                 "agent_name": "docs-indexer", "job_type": "crawl", "start_time": start.isoformat(),
                 "created_at": start.isoformat(), "status": "running", "items_discovered": 140,
                 "items_succeeded": 61, "git_repo": "https://github.com/acme/agents.git", "git_branch": "main"})
    return runs


def seed(url: str) -> str:
    """Post the demo data; returns the event_id of a failed run to show in detail."""
    now = datetime.now(UTC)
    runs = demo_runs(now)
    for i in range(0, len(runs), 200):
        requests.post(url + "/api/v1/runs/batch", json=runs[i:i + 200], timeout=30).raise_for_status()
    failed = next(r for r in reversed(runs) if r.get("status") == "failure" and r["agent_name"] == "pr-reviewer")
    start = datetime.fromisoformat(failed["start_time"])
    events = [{"event_type": kind, "timestamp": (start + timedelta(seconds=s)).isoformat(), "payload": payload}
              for kind, s, payload in (("checkout", 2, {"ref": "main", "sha": "9f2c1e7"}),
                                       ("prompt_sent", 9, {"model": "large", "tokens": 18211}),
                                       ("retry", 131, {"attempt": 2, "reason": "timeout"}),
                                       ("gave_up", 254, {"attempts": 2}))]
    requests.post(f"{url}/api/v1/runs/{failed['event_id']}/events", json=events, timeout=10).raise_for_status()
    requests.post(f"{url}/api/v1/runs/{failed['event_id']}/associate-commit",
                  json={"commit_hash": "9f2c1e7a41d0b3", "commit_source": "llm", "commit_author": "pr-reviewer"},
                  timeout=10).raise_for_status()
    return failed["event_id"]


def photograph(url: str, failed_event_id: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    pages = [
        ("runs", "/"),
        ("runs-filtered", "/?status=failure&range=7d"),
        ("run-detail", f"/runs/{failed_event_id}"),
        ("stale", "/stale"),
        ("agents", "/agents"),
    ]
    written = []
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for scheme in ("light", "dark"):
            context = browser.new_context(viewport={"width": 1360, "height": 900}, color_scheme=scheme,
                                          timezone_id="Europe/Berlin", device_scale_factor=1)
            page = context.new_page()
            for name, path in pages:
                page.goto(url + path)
                page.wait_for_load_state("networkidle")
                target = out / f"{name}-{scheme}.png"
                # caret="initial": hiding the caret injects a <style>, which the CSP refuses.
                page.screenshot(path=str(target), full_page=name != "runs", caret="initial")
                written.append(target)
            context.close()
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="where the PNGs go")
    options = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        print(f"error: {CHROMIUM} is missing; `make chromium` installs it", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="lt-screenshots-") as tmp:
        proc, url = start_console(Path(tmp))
        try:
            failed = seed(url)
            for path in photograph(url, failed, Path(options.out)):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
