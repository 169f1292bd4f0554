"""A failure, then recovery: from the API to the received webhook, on both backends."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from console.core.settings import load_settings


@pytest.fixture
def settings(env):
    return load_settings({**env, "TELEMETRY_ALERT_WEBHOOK_SECRET": "hook-secret",
                          "TELEMETRY_ALERT_CONSOLE_URL": "http://console.example"})


def test_a_failure_notifies_once_and_its_recovery_resolves_it(alerts, receiver):
    channel = alerts.channel(receiver.url)
    rule = alerts.rule([channel], job_type="nightly")
    alerts.run("success")
    assert alerts.tick()["opened"] == 0 and receiver.requests == []

    failed = alerts.run("failure", error_summary="disk full", duration_ms=1234)
    counts = alerts.tick()
    assert counts["opened"] == 1 and counts["sent"] == 1
    (document,) = receiver.documents
    assert document["state"] == "open" and document["kind"] == "failure"
    assert document["agent_name"] == "etl" and document["job_type"] == "nightly"
    assert document["rule"] == rule["name"]
    assert document["run"]["event_id"] == failed and document["run"]["error_summary"] == "disk full"
    assert document["run"]["duration_ms"] == 1234 and document["run"]["status"] == "failure"
    assert document["console_url"].startswith("http://console.example/alerts")
    # Signed as the export signs: HMAC-SHA256 over "timestamp.body".
    headers = receiver.requests[0]["headers"]
    expected = hmac.new(b"hook-secret", headers["X-Telemetry-Timestamp"].encode() + b"." + receiver.requests[0]["body"],
                        hashlib.sha256).hexdigest()
    assert headers["X-Telemetry-Signature"] == f"sha256={expected}"
    assert headers["Idempotency-Key"] == document["notification_id"]

    # Another failure while open: no new incident, no new notification.
    alerts.run("failure")
    assert alerts.tick()["opened"] == 0
    assert len(receiver.requests) == 1
    (incident,) = alerts.incidents(state="open")
    assert incident["notifications"] == 1 and incident["rule_id"] == rule["id"]

    alerts.run("success")
    counts = alerts.tick()
    assert counts["resolved"] == 1
    assert [d["state"] for d in receiver.documents] == ["open", "resolved"]
    assert receiver.documents[1]["incident_id"] == document["incident_id"]
    assert alerts.incidents(state="open") == []
    (resolved,) = alerts.incidents(state="resolved", agent_name="etl")
    assert resolved["notifications"] == 2 and resolved["resolved_at"]


def test_other_agents_and_job_types_do_not_match(alerts, receiver):
    alerts.rule([alerts.channel(receiver.url)], job_type="nightly")
    alerts.run("failure", agent_name="other")
    alerts.run("failure", job_type="hourly")
    assert alerts.tick()["opened"] == 0
    assert receiver.requests == []


def test_all_agents_rule_opens_one_incident_per_agent_and_job_type(alerts, receiver):
    alerts.rule([alerts.channel(receiver.url)], agent_name="*")
    alerts.run("failure", agent_name="a")
    alerts.run("timeout", agent_name="b")
    alerts.run("failure", agent_name="b", job_type="other")
    assert alerts.tick()["opened"] == 3
    assert sorted((d["agent_name"], d["job_type"]) for d in receiver.wait_for(3)) == [
        ("a", "nightly"), ("b", "nightly"), ("b", "other")]


def test_n_failures_in_a_row(alerts, receiver):
    alerts.rule([alerts.channel(receiver.url)], failures_in_a_row=3)
    for _ in range(2):
        alerts.run("failure")
    assert alerts.tick()["opened"] == 0
    alerts.run("success")
    alerts.run("failure")
    alerts.run("failure")
    assert alerts.tick()["opened"] == 0
    alerts.run("failure")
    assert alerts.tick()["opened"] == 1
    assert receiver.documents[0]["state"] == "open"


def test_success_rate_below_a_bound(alerts, receiver):
    alerts.rule([alerts.channel(receiver.url)], success_rate_below=0.5, window_minutes=60)
    for status in ("success", "success", "failure"):
        alerts.run(status)
    assert alerts.tick()["opened"] == 0  # 2 of 3 succeeded
    alerts.run("failure")
    alerts.run("failure")
    assert alerts.tick()["opened"] == 1  # 2 of 5
    assert "success rate 40%" in receiver.documents[0]["detail"]


def test_a_patch_to_failure_and_a_batch_alert_too(alerts, receiver, client):
    alerts.rule([alerts.channel(receiver.url)], agent_name="*")
    running = alerts.run("running", agent_name="patched")
    answer = client.patch(f"/api/v1/runs/{running}", json={"status": "failure", "error_summary": "boom"})
    assert answer.status_code == 200
    batch = [{"event_id": f"b-{i}", "run_id": f"b-{i}", "agent_name": "batched", "job_type": "j",
              "status": "timeout", "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T00:00:01Z"}
             for i in range(2)]
    assert client.post("/api/v1/runs/batch", json=batch).status_code == 201
    assert alerts.tick()["opened"] == 2
    assert sorted(d["agent_name"] for d in receiver.wait_for(2)) == ["batched", "patched"]


def test_prometheus_shows_open_incidents_deliveries_and_the_last_evaluation(alerts, receiver, client):
    receiver.script = [500, 200]
    alerts.rule([alerts.channel(receiver.url)], agent_name="*")
    alerts.run("failure", agent_name="web")
    alerts.tick()
    alerts.clock.advance(seconds=10)
    alerts.deliver()
    text = client.get("/metrics", headers={"Accept": "text/plain"}).get_data(as_text=True)
    assert 'telemetry_alert_incidents_open{agent="web",kind="failure"} 1' in text
    assert 'telemetry_alert_notifications_total{channel_kind="webhook",outcome="failed"} 1' in text
    assert 'telemetry_alert_notifications_total{channel_kind="webhook",outcome="sent"} 1' in text
    assert "telemetry_alert_last_evaluation_timestamp_seconds " in text
