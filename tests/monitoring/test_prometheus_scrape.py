"""A real Prometheus scrapes a real console while runs start, end, are deleted and pruned,
job history is pruned and the console restarts: no `_total` series ever resets.

Prometheus 2 (Debian's /usr/bin/prometheus) runs with its own config and data
directory on a loopback port, scraping every second; the console runs on SQLite, so
single POSTs are counted by the insert watermark's catch-up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from console.core.settings import load_settings
from console.core.timeutil import format_utc, utcnow
from console.jobs import history
from console.jobs.retention import apply_retention
from console.store.db import Database
from tests.console.conftest import run_body
from tests.console.test_ingest import line
from tests.helpers import ConsoleProcess, free_port

PROMETHEUS = "/usr/bin/prometheus"
SCRAPES = 30


class Prometheus:
    def __init__(self, base: Path, target: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = base / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: telemetry\n"
            "    scrape_interval: 1s\n"
            "    scrape_timeout: 1s\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.log = open(base / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={base / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("prometheus did not become ready: " + (base / "prometheus.log").read_text()[-2000:])

    def query(self, expr: str) -> list[dict]:
        answer = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        self.log.close()


@pytest.fixture
def console_env(tmp_path) -> dict[str, str]:
    base = tmp_path / "console"
    base.mkdir()
    return {
        "TELEMETRY_BASE_DIR": str(base),
        "TELEMETRY_DB_PATH": str(base / "telemetry.sqlite"),
        "TELEMETRY_SECRET_KEY": "scrape-secret",
        "TELEMETRY_API_PORT": str(free_port()),
        "TELEMETRY_API_THREADS": "4",
    }


def post(console: ConsoleProcess, path: str, body, expected: int = 201) -> None:
    response = requests.post(console.url + path, json=body, timeout=30)
    assert response.status_code == expected, response.text


def patch(console: ConsoleProcess, event_id: str, status: str) -> None:
    response = requests.patch(f"{console.url}/api/v1/runs/{event_id}", json={"status": status}, timeout=30)
    assert response.status_code == 200, response.text


def fail_and_prune_a_job(db: Database, n: int) -> None:
    long_ago = utcnow() - timedelta(days=100)

    def fail(session):
        run = history.claim_firing(session, "backup", long_ago + timedelta(seconds=n), "schedule", now=long_ago)
        history.finish_firing(session, run, "failure", error="disk full", now=long_ago)

    db.write(fail)
    db.write(lambda session: history.prune_history(session, 30))


def test_no_counter_resets_across_deletes_retention_and_restarts(console_env, tmp_path):
    if not os.path.exists(PROMETHEUS):
        pytest.fail(f"{PROMETHEUS} is missing: apt-get install -y prometheus")
    console = ConsoleProcess(console_env, tmp_path / "console.log")
    console.start()
    prometheus = Prometheus(tmp_path, f"127.0.0.1:{console.port}")
    db = Database(load_settings(console_env))
    old = format_utc(utcnow() - timedelta(days=40))
    try:
        running: list[str] = []
        step = 0
        while prometheus.value('sum_over_time(up{job="telemetry"}[5m])') < SCRAPES:
            step += 1
            assert step < SCRAPES * 10, "prometheus is not scraping: " + console.log()
            fresh = run_body(agent_name=f"agent-{step % 3}")
            post(console, "/api/v1/runs", fresh)  # a single POST: counted by the watermark's catch-up
            running.append(fresh["event_id"])
            aged = [run_body(agent_name="aged", status="success", created_at=old) for _ in range(2)]
            post(console, "/api/v1/runs/batch", aged + [run_body(agent_name="batched", status="partial")])
            now = format_utc(utcnow())
            lines = [line("run_started", now, event_id=f"ingested-{step}", agent_name="ingested", start_time=now),
                     line("run_ended", now, {"status": "success"}, event_id=f"ingested-{step}",
                          agent_name="ingested", start_time=now)]
            post(console, "/api/v1/ingest", lines, expected=200)
            post(console, "/api/v1/ingest", lines, expected=200)  # a replay: duplicates
            if len(running) > 2:
                patch(console, running.pop(0), "success" if step % 2 else "failure")
            if step % 4 == 0:
                doomed = running.pop(0)
                assert requests.delete(f"{console.url}/api/v1/runs/{doomed}", timeout=30).status_code == 204
            if step % 5 == 0:
                assert apply_retention(db, 30)["runs_deleted"] > 0
                fail_and_prune_a_job(db, step)
            if step == 12:
                console.stop()
                console.start()
            time.sleep(0.5)

        totals = prometheus.query('{__name__=~".+_total", job="telemetry"}')
        names = {series["metric"]["__name__"] for series in totals}
        assert names == {"telemetry_runs_started_total", "telemetry_runs_finished_total",
                         "telemetry_ingest_records_total", "telemetry_job_failures_total"}, names
        resets = prometheus.query('resets({__name__=~".+_total", job="telemetry"}[5m])')
        assert len(resets) == len(totals)
        assert [r for r in resets if float(r["value"][1]) != 0] == []
        # The same scrapes saw the stored-runs gauge fall: the old counter would have reset.
        assert prometheus.value('sum(resets(telemetry_runs{job="telemetry"}[5m]))') > 0
        assert prometheus.value('sum(increase(telemetry_runs_finished_total{job="telemetry"}[5m]))') > 0
        # The console's `job` label meets Prometheus' own: stored as `exported_job` (docs/monitoring/README.md).
        assert prometheus.value('telemetry_job_failures_total{exported_job="backup"}') >= 1
        scrapes = prometheus.value('sum_over_time(up{job="telemetry"}[5m])')
        print(f"\n[figures] prometheus scrape: {step} steps, {scrapes:.0f} scrapes, {len(totals)} counter series")
    finally:
        db.dispose()
        prometheus.stop()
        console.stop()
