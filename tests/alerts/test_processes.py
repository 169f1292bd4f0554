"""Claims across workers and hosts: real `serve` processes, one PostgreSQL or SQLite file, a real receiver.

The evaluation interval is an hour here, so a notification that arrives at all was woken by the change
marker. Absence of a duplicate is shown by a later notification arriving first in order, not by a wait.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa

from console.alerts import deliver
from console.alerts.tables import alert_notifications
from console.core.settings import load_settings
from console.core.timeutil import format_utc, utcnow
from console.store.db import Database
from tests.helpers import ConsoleProcess, free_port

HANG_GUARD = 60.0


def alerting_env(env, **extra) -> dict[str, str]:
    return {**env, "TELEMETRY_SCHEDULER_ENABLED": "true", "TELEMETRY_ALERT_EVALUATE_SECONDS": "3600",
            "TELEMETRY_SCHEDULER_LEASE_SECONDS": "2", "TELEMETRY_ALERT_TIMEOUT_MS": "2000",
            "TELEMETRY_API_PORT": str(free_port()), **extra}


def setup_rule(url: str, receiver_url: str) -> None:
    channel = requests.post(f"{url}/api/v1/alerts/channels", json={"name": "hook", "kind": "webhook",
                                                                    "target": receiver_url}, timeout=10)
    assert channel.status_code == 201, channel.text
    rule = requests.post(f"{url}/api/v1/alerts/rules", json={
        "name": "any failure", "agent_name": "*", "on": "failure", "channels": [channel.json()["id"]],
        "notify_resolved": True, "repeat_minutes": 0}, timeout=10)
    assert rule.status_code == 201, rule.text


def post_failure(url: str, agent_name: str) -> None:
    now = utcnow()
    answer = requests.post(f"{url}/api/v1/runs", json={
        "event_id": str(uuid.uuid4()), "run_id": f"r-{agent_name}", "agent_name": agent_name, "job_type": "j",
        "status": "failure", "start_time": format_utc(now - timedelta(seconds=2)), "end_time": format_utc(now)},
        timeout=10)
    assert answer.status_code == 201, answer.text


def agents_notified(receiver) -> list[str]:
    return [d["agent_name"] for d in receiver.documents]


@pytest.fixture
def started():
    processes: list[ConsoleProcess] = []
    yield processes
    for process in processes:
        process.stop()


def test_two_workers_send_one_notification_woken_by_the_marker(env, receiver, tmp_path, started):
    console = ConsoleProcess(alerting_env(env, TELEMETRY_API_WORKERS="2"), tmp_path / "console.log")
    console.start()
    started.append(console)
    setup_rule(console.url, receiver.url)
    for index in range(4):  # POSTs land on either worker
        post_failure(console.url, f"agent-{index}")
        receiver.wait_for(index + 1, HANG_GUARD)
    assert agents_notified(receiver) == [f"agent-{i}" for i in range(4)], console.log()
    assert len({d["notification_id"] for d in receiver.documents}) == 4


@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_consoles_on_one_postgresql_send_one_notification(env, receiver, tmp_path, started):
    consoles = [ConsoleProcess(alerting_env({**env, "TELEMETRY_BASE_DIR": str(tmp_path / f"host{i}")}),
                               tmp_path / f"console{i}.log") for i in range(2)]
    for console in consoles:
        console.start()
        started.append(console)
    setup_rule(consoles[0].url, receiver.url)
    for index in range(4):
        post_failure(consoles[index % 2].url, f"agent-{index}")
        receiver.wait_for(index + 1, HANG_GUARD)
    assert agents_notified(receiver) == [f"agent-{i}" for i in range(4)]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_leader_killed_mid_delivery_is_finished_by_the_next_with_the_same_id(env, receiver, tmp_path, started):
    consoles = [ConsoleProcess(alerting_env({**env, "TELEMETRY_BASE_DIR": str(tmp_path / f"host{i}")}),
                               tmp_path / f"console{i}.log") for i in range(2)]
    consoles[0].start()  # the first one up leads
    started.append(consoles[0])
    setup_rule(consoles[0].url, receiver.url)
    consoles[1].start()
    started.append(consoles[1])
    receiver.hold.set()  # the receiver takes the request and does not answer
    post_failure(consoles[1].url, "victim")
    receiver.wait_for(1, HANG_GUARD)
    consoles[0].kill()  # mid-delivery
    receiver.hold.clear()
    receiver.release.set()
    receiver.wait_for(2, HANG_GUARD)  # the new leader, once the dead one's claim expired
    first, second = receiver.documents[:2]
    assert first["notification_id"] == second["notification_id"]
    post_failure(consoles[1].url, "after")
    receiver.wait_for(3, HANG_GUARD)
    assert agents_notified(receiver) == ["victim", "victim", "after"], consoles[1].log()
    # The console records "sent" just after the receiver answered: wait for that (hang guard only).
    db = Database(load_settings(env))
    try:
        deadline = time.monotonic() + HANG_GUARD
        while True:
            with db.read() as session:
                states = session.execute(sa.select(alert_notifications.c.state)
                                         .order_by(alert_notifications.c.id)).scalars().all()
            if "pending" not in states or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        db.dispose()
    assert states == ["sent", "sent"]


def test_racing_deliverers_send_each_notification_once(env, receiver, alerts, clock):
    """Four deliverers with engines of their own, as four processes would be, on the same due work."""
    channel = alerts.channel(receiver.url)
    alerts.rule([channel], agent_name="*")
    for index in range(8):
        alerts.run("failure", agent_name=f"a{index}")
    assert alerts.evaluate()["notifications"] == 8
    settings = load_settings({**env, "TELEMETRY_ALERT_STORM_THRESHOLD": "100"})
    databases = [Database(settings) for _ in range(4)]
    try:
        threads = [threading.Thread(target=deliver.deliver_due, args=(db, settings, clock, f"runner-{i}"))
                   for i, db in enumerate(databases)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HANG_GUARD)
    finally:
        for db in databases:
            db.dispose()
    ids = [d["notification_id"] for d in receiver.documents]
    assert len(ids) == 8 and len(set(ids)) == 8


def test_a_failure_reported_through_the_sdk_reaches_the_webhook(env, receiver, tmp_path, started):
    """SDK → spool → /api/v1/ingest → the change marker wakes the leader → webhook."""
    from telemetry import TelemetryClient
    from telemetry.config import TelemetryConfig

    console = ConsoleProcess(alerting_env(env), tmp_path / "console.log")
    console.start()
    started.append(console)
    setup_rule(console.url, receiver.url)
    client = TelemetryClient(TelemetryConfig(metrics_dir=tmp_path / "sdk", api_url=console.url))
    try:
        run_id = client.start_run("sdk-agent", "nightly")
        client.end_run(run_id, status="failure", error_summary="ValueError: bad row")
        client.flush(timeout=HANG_GUARD)
    finally:
        client.close()
    (document,) = receiver.wait_for(1, HANG_GUARD)
    assert document["agent_name"] == "sdk-agent" and document["run"]["error_summary"] == "ValueError: bad row"
