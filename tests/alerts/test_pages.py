"""The Alerts page through the test client: forms, errors, banners, and incidents on other pages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.web.conftest import csrf  # noqa: F401 - the fixture


@pytest.fixture
def hx(client, csrf):  # noqa: F811
    def post(path: str, data: dict, status: int = 200):
        answer = client.post(path, data={"csrf_token": csrf, **data}, headers={"HX-Request": "true"})
        assert answer.status_code == status, answer.get_data(as_text=True)[:2000]
        return answer.get_data(as_text=True)

    return post


def test_channels_and_rules_are_made_edited_and_removed_with_forms(alerts, receiver, hx, client):
    text = hx("/alerts/channels", {"name": "slack-ish", "kind": "webhook", "target": receiver.url + "?token=s3cret"})
    assert "slack-ish" in text and "s3cret" not in text and 'id="alerts-config"' in text
    assert "<html" not in text  # the partial only
    channel_id = client.get("/api/v1/alerts/channels").get_json()[0]["id"]

    text = hx(f"/alerts/channels/{channel_id}/test", {})
    assert "Test sent (200)" in text and receiver.documents[0]["kind"] == "test"

    text = hx("/alerts/rules", {"name": "etl late", "on": "missing", "agent_name": "nightly-etl",
                                "channels": str(channel_id), "notify_resolved": "on", "repeat_minutes": "0",
                                "schedule": "30 2 * * *", "grace_seconds": "600", "timezone": "Europe/Berlin"})
    assert "etl late" in text and "30 2 * * * Europe/Berlin" in text
    rule = client.get("/api/v1/alerts/rules").get_json()[0]
    assert rule["grace_seconds"] == 600 and rule["channels"] == [channel_id]

    edit = client.get(f"/alerts/rules/{rule['id']}/edit", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'value="30 2 * * *"' in edit and "Save rule" in edit
    text = hx(f"/alerts/rules/{rule['id']}", {"name": "etl late", "on": "missing", "agent_name": "nightly-etl",
                                              "channels": str(channel_id), "schedule": "0 3 * * *",
                                              "timezone": "Europe/Berlin", "repeat_minutes": "60"})
    changed = client.get("/api/v1/alerts/rules").get_json()[0]
    assert changed["schedule"] == "0 3 * * *" and changed["repeat_minutes"] == 60
    assert changed["notify_resolved"] is False  # an unticked box

    text = hx(f"/alerts/rules/{rule['id']}/delete", {})
    assert client.get("/api/v1/alerts/rules").get_json() == []


@pytest.mark.parametrize("data, words", [
    ({"name": "x", "on": "missing", "agent_name": "*", "schedule": "30 2 * * *"}, '"*"'),
    ({"name": "x", "on": "missing", "agent_name": "a", "schedule": "99 2 * * *"}, "cron"),
    ({"name": "x", "on": "missing", "agent_name": "a", "schedule": "30 2 * * *", "timezone": "Nowhere/X"},
     "time zone"),
    ({"name": "x", "on": "failure", "agent_name": "a", "channels": "12345"}, "unknown channel"),
    ({"name": "x", "on": "failure", "agent_name": "a", "repeat_minutes": "soon"}, "repeat_minutes"),
])
def test_a_bad_rule_form_answers_422_with_the_reason_and_stores_nothing(hx, client, data, words):
    text = hx("/alerts/rules", data)  # htmx swaps only a 200: the errors come in the section
    assert words.lower() in text.lower().replace("&#34;", '"') and 'role="alert"' in text
    plain = client.post("/alerts/rules", data={"csrf_token": "test-csrf-token", **data})
    assert plain.status_code == 422 and words.lower() in plain.get_data(as_text=True).lower().replace("&#34;", '"')
    assert client.get("/api/v1/alerts/rules").get_json() == []


def test_a_form_without_its_csrf_token_is_refused(client):
    answer = client.post("/alerts/channels", data={"name": "x", "kind": "webhook", "target": "http://a"})
    assert answer.status_code in (400, 403)
    assert client.get("/api/v1/alerts/channels").get_json() == []


def test_mutes_from_the_page(alerts, hx, client, clock):
    rule = alerts.rule([])
    hx("/alerts/mutes", {"agent_name": "etl", "hours": "2"})
    text = hx("/alerts/mutes", {"rule": f"rule:{rule['id']}", "hours": "1"})
    assert "agent <strong>etl</strong>" in text and f"rule <strong>{rule['name']}</strong>" in text
    mutes = client.get("/api/v1/alerts/mute").get_json()
    assert len(mutes) == 2
    assert "give either agent_name or rule_id" in hx("/alerts/mutes", {"hours": "1"})
    hx(f"/alerts/mutes/{mutes[0]['id']}/delete", {})
    assert len(client.get("/api/v1/alerts/mute").get_json()) == 1


def test_incidents_show_on_the_alerts_agents_and_run_pages_with_their_deliveries(alerts, receiver, client):
    receiver.script = [500]
    alerts.rule([alerts.channel(receiver.url, name="flaky")], agent_name="*")
    failed = alerts.run("failure", agent_name="loader")
    for _ in range(3):
        alerts.tick()
        alerts.clock.advance(minutes=10)
    page = client.get("/alerts").get_data(as_text=True)
    assert "Open incidents (1)" in page
    assert re.search(r"open → flaky: pending after 3 attempts \(500 answer 500\)", page)
    assert 'id="banner-channel-' in page and "keeps failing" in page
    assert '<span class="count alert-count" title="open incidents">1</span>' in page
    assert "1 open incident" in client.get("/agents").get_data(as_text=True)
    assert "1 open incident" in client.get(f"/runs/{failed}").get_data(as_text=True)


def test_the_banner_says_when_no_leader_evaluated_recently(alerts, client, db):
    from console.alerts.evaluate import evaluate
    from console.core.timeutil import utcnow

    alerts.rule([])
    assert 'id="banner-leader"' in client.get("/alerts").get_data(as_text=True)
    db.write(lambda s: evaluate(s, alerts.settings, utcnow(), "test"))
    assert 'id="banner-leader"' not in client.get("/alerts").get_data(as_text=True)
    db.write(lambda s: evaluate(s, alerts.settings, utcnow() - timedelta(minutes=10), "test"))
    assert 'id="banner-leader"' in client.get("/alerts").get_data(as_text=True)
