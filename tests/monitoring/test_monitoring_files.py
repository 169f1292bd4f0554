"""The exposition passes `promtool check metrics`; docs/monitoring/'s rules pass promtool's
checks and unit tests; every query of the rules and the dashboard names an exposed metric."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import timedelta

from console.core.timeutil import format_utc, utcnow
from console.jobs import history
from tests.console.conftest import run_body
from tests.console.test_ingest import line
from tests.helpers import ROOT

MONITORING = ROOT / "docs" / "monitoring"
METRIC_NAME = re.compile(r"\btelemetry_[a-z0-9_]+")


def seed(client, db) -> None:
    """At least one sample of every family."""
    hours_ago = format_utc(utcnow() - timedelta(hours=3))
    runs = [run_body(agent_name="crawler", status="success"), run_body(agent_name="crawler", start_time=hours_ago)]
    assert client.post("/api/v1/runs/batch", json=runs).status_code == 201
    now = format_utc(utcnow())
    lines = [line("run_started", now, event_id="seeded", agent_name="indexer", start_time=now), {"v": 7}]
    assert client.post("/api/v1/ingest", json=lines).status_code == 200

    def jobs(session):
        for outcome in ("success", "failure"):
            run = history.claim_firing(session, "backup", utcnow() - timedelta(minutes=len(outcome)), "schedule")
            history.finish_firing(session, run, outcome)

    db.write(jobs)


def exposed_names(text: str) -> set[str]:
    return {sample.split("{")[0].split(" ")[0] for sample in text.splitlines() if sample and not sample.startswith("#")}


def test_promtool_accepts_the_exposition(client, db, promtool):
    seed(client, db)
    text = client.get("/metrics", headers={"Accept": "text/plain"}).text
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and checked.stdout.strip() == "", checked.stdout + checked.stderr
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert {name for name, kind in families.items() if kind == "counter"} == {
        "telemetry_runs_started_total", "telemetry_runs_finished_total",
        "telemetry_ingest_records_total", "telemetry_job_failures_total", "telemetry_alert_notifications_total"}
    assert families["telemetry_runs"] == "gauge" and "telemetry_runs_total" not in families


def test_the_alerting_rules_pass_promtool(promtool):
    checked = subprocess.run([promtool, "check", "rules", str(MONITORING / "alerts.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "alerts.test.yml"], cwd=MONITORING,
                            capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_query_names_exposed_metrics(client, db):
    seed(client, db)
    exposed = exposed_names(client.get("/metrics", headers={"Accept": "text/plain"}).text) | {"up"}
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert len(queries) >= len(dashboard["panels"])
    unknown = [(q, name) for q in queries for name in METRIC_NAME.findall(q) if name not in exposed]
    assert unknown == []
    assert all(METRIC_NAME.search(q) for q in queries), [q for q in queries if not METRIC_NAME.search(q)]
    rules = (MONITORING / "alerts.yml").read_text()
    named = set(METRIC_NAME.findall(rules))
    assert named and named <= exposed, named - exposed
