"""The issue's scenarios on the movable clock: stale marked failed, missed schedules across DST,
slow runs, mutes, repeats, a storm, a receiver that fails before it accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from console.alerts.tables import alert_attempts, alert_counters, alert_notifications


def test_a_stale_run_marked_failed_resolves_stale_and_opens_failure(alerts, receiver, client, clock):
    channel = alerts.channel(receiver.url)
    alerts.rule([channel], on="stale", stale_minutes=30, name="silent")
    alerts.rule([channel], name="failed")
    run = alerts.run("running", start_time=clock.now - timedelta(minutes=5))
    assert alerts.tick()["opened"] == 0
    clock.advance(minutes=40)
    assert alerts.tick()["opened"] == 1
    assert [(d["kind"], d["state"]) for d in receiver.documents] == [("stale", "open")]
    assert receiver.documents[0]["run"]["event_id"] == run
    assert alerts.tick()["opened"] == 0  # still silent: not again

    answer = client.post("/api/v1/runs/mark-failed", json={"event_ids": [run], "reason": "silent"})
    assert answer.get_json()["count"] == 1
    counts = alerts.tick()
    assert counts["resolved"] == 1 and counts["opened"] == 1
    assert sorted((d["kind"], d["state"]) for d in receiver.documents[1:]) == [
        ("failure", "open"), ("stale", "resolved")]
    failure = next(d for d in receiver.documents if d["kind"] == "failure")
    assert failure["run"]["event_id"] == run and failure["run"]["error_summary"].startswith("Marked failed")


def test_a_slow_run_alerts_while_running_and_resolves_when_it_ends(alerts, receiver, client, clock):
    alerts.rule([alerts.channel(receiver.url)], on="slow", duration_ms_over=60_000)
    run = alerts.run("running", start_time=clock.now - timedelta(seconds=10))
    assert alerts.tick()["opened"] == 0
    clock.advance(minutes=2)
    assert alerts.tick()["opened"] == 1
    assert receiver.documents[0]["kind"] == "slow" and receiver.documents[0]["run"]["event_id"] == run
    client.patch(f"/api/v1/runs/{run}", json={"status": "success", "duration_ms": 130_000})
    assert alerts.tick()["resolved"] == 1
    assert receiver.documents[-1]["state"] == "resolved"
    # A run that arrives already over the bound alerts once, then resolves; it never reopens.
    alerts.run("success", duration_ms=90_000)
    assert alerts.tick()["opened"] == 1
    assert alerts.tick()["resolved"] == 1
    assert alerts.tick()["opened"] == 0


def test_a_mute_silences_a_rule_until_it_ends_and_unmute_restores_it(alerts, receiver, client, clock):
    channel = alerts.channel(receiver.url)
    rule = alerts.rule([channel], agent_name="*")
    mute = alerts.post("mute", {"agent_name": "etl", "until": (clock.now + timedelta(hours=1)).isoformat()})
    assert client.get("/api/v1/alerts/mute").get_json()[0]["id"] == mute["id"]
    alerts.run("failure")
    alerts.run("failure", agent_name="other")
    assert alerts.tick()["opened"] == 2
    assert [d["agent_name"] for d in receiver.documents] == ["other"]
    (muted,) = alerts.incidents(agent_name="etl")
    assert muted["notifications"] == 0 and muted["state"] == "open"
    # Its recovery says nothing either: no one heard of the incident.
    alerts.run("success")
    assert alerts.tick()["resolved"] == 1
    assert len(receiver.requests) == 1

    by_rule = alerts.post("mute", {"rule_id": rule["id"], "until": (clock.now + timedelta(hours=1)).isoformat()})
    alerts.run("failure", agent_name="third")
    alerts.tick()
    assert len(receiver.requests) == 1
    assert client.delete(f"/api/v1/alerts/mute/{by_rule['id']}").status_code == 204
    assert client.delete(f"/api/v1/alerts/mute/{mute['id']}").status_code == 204
    assert client.delete(f"/api/v1/alerts/mute/{mute['id']}").status_code == 404
    alerts.run("failure", agent_name="fourth")
    alerts.tick()
    assert [d["agent_name"] for d in receiver.documents] == ["other", "fourth"]


def test_an_open_incident_repeats_on_its_interval_and_never_with_zero(alerts, receiver, clock):
    channel = alerts.channel(receiver.url)
    alerts.rule([channel], repeat_minutes=30, agent_name="a")
    alerts.rule([channel], repeat_minutes=0, agent_name="b")
    alerts.run("failure", agent_name="a")
    alerts.run("failure", agent_name="b")
    alerts.tick()
    assert len(receiver.requests) == 2
    clock.advance(minutes=29)
    alerts.tick()
    assert len(receiver.requests) == 2
    clock.advance(minutes=2)
    alerts.tick()
    clock.advance(minutes=31)
    alerts.tick()
    repeats = receiver.documents[2:]
    assert [(d["agent_name"], d["repeat"]) for d in repeats] == [("a", True), ("a", True)]
    assert len({d["notification_id"] for d in receiver.documents}) == 4


def test_a_storm_of_40_agents_sends_one_grouped_notification(alerts, receiver, settings):
    alerts.rule([alerts.channel(receiver.url)], agent_name="*")
    for index in range(40):
        alerts.run("failure", agent_name=f"agent-{index:02}")
    counts = alerts.tick()
    assert counts["opened"] == 40 and counts["sent"] == 1
    (document,) = receiver.documents
    assert document["grouped"] is True and document["count"] == 40
    assert sorted(d["agent_name"] for d in document["notifications"]) == [f"agent-{i:02}" for i in range(40)]
    assert len({d["notification_id"] for d in document["notifications"]}) == 40
    assert all(i["notifications"] == 1 for i in alerts.incidents())
    assert settings.alert_storm_threshold < 40


def test_a_receiver_that_answers_500_three_times_gets_the_same_notification_then_200(alerts, receiver, db, clock):
    receiver.script = [500, 500, (503, {"Retry-After": "120"}), 200]
    alerts.rule([alerts.channel(receiver.url)])
    alerts.run("failure")
    alerts.tick()
    assert len(receiver.requests) == 1
    alerts.tick()  # its retry is not due yet
    assert len(receiver.requests) == 1
    clock.advance(seconds=5)  # the first backoff
    alerts.deliver()
    clock.advance(seconds=10)  # the second
    alerts.deliver()
    assert len(receiver.requests) == 3
    clock.advance(seconds=60)  # Retry-After said 120
    alerts.deliver()
    assert len(receiver.requests) == 3
    clock.advance(seconds=61)
    alerts.deliver()
    assert len(receiver.requests) == 4
    assert len({d["notification_id"] for d in receiver.documents}) == 1
    with db.read() as session:
        attempts = session.execute(sa.select(alert_attempts.c.outcome, alert_attempts.c.status)
                                   .order_by(alert_attempts.c.id)).all()
        state = session.execute(sa.select(alert_notifications.c.state, alert_notifications.c.attempts)).one()
        counters = dict(session.execute(sa.select(alert_counters.c.outcome, alert_counters.c.count)).all())
    assert [tuple(a) for a in attempts] == [("failed", 500), ("failed", 500), ("failed", 503), ("sent", 200)]
    assert tuple(state) == ("sent", 4)
    assert counters == {"failed": 3, "sent": 1}
    clock.advance(hours=1)
    alerts.tick()
    assert len(receiver.requests) == 4


def test_a_failing_channel_does_not_hold_the_others_and_catches_up_when_back(alerts, receiver, clock):
    from tests.alerts.conftest import Receiver

    down = Receiver()
    try:
        down.script = [500]
        good = alerts.channel(receiver.url)
        bad = alerts.channel(down.url)
        alerts.rule([bad, good], agent_name="*")
        for index in range(3):
            alerts.run("failure", agent_name=f"a{index}")
        alerts.tick()
        assert len(receiver.requests) == 3
        assert len(down.requests) == 1  # a pass stops a failing channel at its first failure
        for _ in range(3):
            clock.advance(minutes=30)
            alerts.deliver()
        assert len(receiver.requests) == 3
        assert len(down.requests) == 4 and len({d["notification_id"] for d in down.documents}) == 1
        down.script = [200]
        clock.advance(minutes=30)
        alerts.deliver()
        assert sorted(d["agent_name"] for d in down.documents[4:]) == ["a0", "a1", "a2"]
        assert down.documents[4]["notification_id"] == down.documents[0]["notification_id"]
    finally:
        down.close()


def test_a_rejecting_receiver_is_not_retried(alerts, receiver, clock, db):
    receiver.script = [400]
    alerts.rule([alerts.channel(receiver.url)])
    alerts.run("failure")
    alerts.tick()
    clock.advance(hours=2)
    alerts.tick()
    assert len(receiver.requests) == 1
    with db.read() as session:
        assert session.execute(sa.select(alert_notifications.c.state)).scalar() == "gave_up"


def test_a_missed_nightly_schedule_across_both_dst_changes(alerts, receiver, clock):
    """nightly-etl starts by 02:30 Europe/Berlin: on the spring day 02:30 does not exist (due 03:00
    CEST); on the autumn day it happens twice (due at the first)."""
    channel = alerts.channel(receiver.url)
    clock.now = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    rule = alerts.rule([channel], agent_name="nightly-etl", on="missing", schedule="30 2 * * *",
                       timezone="Europe/Berlin", grace_seconds=0, job_type=None)
    _backdate_rule(alerts, rule["id"], clock.now)

    def runs_at(moment: datetime) -> None:
        alerts.run("success", agent_name="nightly-etl", start_time=moment)

    # 28 March (CET, +01:00): a run at 02:00 local = 01:00Z keeps it quiet.
    clock.now = datetime(2026, 3, 28, 1, 0, tzinfo=UTC)
    runs_at(clock.now)
    clock.now = datetime(2026, 3, 28, 1, 31, tzinfo=UTC)
    assert alerts.tick()["opened"] == 0
    # 29 March, the spring change: 02:30 does not exist; the due time is 03:00 CEST = 01:00Z.
    clock.now = datetime(2026, 3, 29, 0, 59, tzinfo=UTC)
    assert alerts.tick()["opened"] == 0
    clock.now = datetime(2026, 3, 29, 1, 0, 1, tzinfo=UTC)
    assert alerts.tick()["opened"] == 1
    assert "2026-03-29T03:00+02:00" in receiver.documents[-1]["detail"]
    assert receiver.documents[-1]["run"] is not None  # the last run seen
    clock.now = datetime(2026, 3, 29, 1, 20, tzinfo=UTC)
    runs_at(clock.now)
    assert alerts.tick()["resolved"] == 1

    # 25 October, the autumn change: 02:30 CEST (00:30Z) comes first, 02:30 CET (01:30Z) again.
    clock.now = datetime(2026, 10, 24, 0, 0, tzinfo=UTC)
    runs_at(clock.now)
    clock.now = datetime(2026, 10, 25, 0, 29, tzinfo=UTC)
    assert alerts.tick()["opened"] == 0
    clock.now = datetime(2026, 10, 25, 0, 31, tzinfo=UTC)
    assert alerts.tick()["opened"] == 1
    assert "2026-10-25T02:30+02:00" in receiver.documents[-1]["detail"]
    clock.now = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
    runs_at(clock.now)  # 02:00 CET, the repeated hour
    assert alerts.tick()["resolved"] == 1
    clock.now = datetime(2026, 10, 25, 1, 31, tzinfo=UTC)  # the second 02:30: not due again
    assert alerts.tick()["opened"] == 0
    assert [d["state"] for d in receiver.documents] == ["open", "resolved", "open", "resolved"]


def test_a_period_counts_from_the_last_run_or_the_rule(alerts, receiver, clock):
    start = clock.now
    rule = alerts.rule([alerts.channel(receiver.url)], on="missing", period_seconds=3600, grace_seconds=300)
    _backdate_rule(alerts, rule["id"], start)
    clock.now = start + timedelta(minutes=64)
    assert alerts.tick()["opened"] == 0  # inside the grace
    clock.now = start + timedelta(minutes=66)
    assert alerts.tick()["opened"] == 1
    assert receiver.documents[0]["run"] is None  # no run seen at all
    alerts.run("running", start_time=clock.now)
    assert alerts.tick()["resolved"] == 1
    clock.advance(minutes=64)
    assert alerts.tick()["opened"] == 0
    clock.advance(minutes=2)
    assert alerts.tick()["opened"] == 1


def _backdate_rule(alerts, rule_id: int, when: datetime) -> None:
    """The rule existed since `when` (the API stamps the real time; the clock here is elsewhere)."""
    from console.alerts.tables import alert_rules

    alerts.db.write(lambda s: s.execute(alert_rules.update().where(alert_rules.c.id == rule_id)
                                        .values(created_at=when - timedelta(seconds=1))))


def test_state_survives_a_restart(alerts, receiver, clock, settings):
    """A new app on the same database (a restart): an open incident does not notify again as new, and a
    `missing` that fell due while nothing evaluated opens at the first pass after."""
    from console.app import create_app
    from tests.alerts.conftest import Alerts

    channel = alerts.channel(receiver.url)
    alerts.rule([channel])
    late = alerts.rule([channel], agent_name="nightly", on="missing", period_seconds=3600)
    _backdate_rule(alerts, late["id"], clock.now)
    alerts.run("failure")
    alerts.tick()
    assert [d["kind"] for d in receiver.documents] == ["failure"]

    app = create_app(settings, {"TESTING": True})
    try:
        again = Alerts(app.test_client(), app.extensions["telemetry_db"], settings, clock)
        clock.advance(hours=3)  # the due time passed while no one evaluated
        counts = again.tick()
        assert counts["opened"] == 1
        assert [d["kind"] for d in receiver.documents] == ["failure", "missing"]
        assert len(again.incidents(state="open")) == 2
    finally:
        app.extensions["telemetry_db"].dispose()
