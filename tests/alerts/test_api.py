"""The alert API: shapes, masking, and bad input answered 422 with a clear detail, storing nothing."""

from __future__ import annotations

import threading

import pytest
from aiosmtpd.controller import Controller

from console.core.settings import load_settings
from tests.helpers import free_port


def test_channels_are_created_listed_masked_and_deleted(client):
    secret_url = "https://hooks.example.com/services/T000/B000/very-secret-token"
    answer = client.post("/api/v1/alerts/channels", json={"name": "ops", "kind": "webhook", "target": secret_url})
    assert answer.status_code == 201
    created = answer.get_json()
    assert created["target"] == "https://hooks.example.com/***"
    listed = client.get("/api/v1/alerts/channels").get_json()
    assert [c["name"] for c in listed] == ["ops"]
    assert "very-secret-token" not in client.get("/api/v1/alerts/channels").get_data(as_text=True)
    mail = client.post("/api/v1/alerts/channels", json={"name": "mail", "kind": "email",
                                                         "target": "oncall@example.com"}).get_json()
    assert mail["target"] == "o***@example.com"
    slack = client.post("/api/v1/alerts/channels", json={"name": "slack", "kind": "apprise",
                                                          "target": "slack://TokenA/TokenB/TokenC"}).get_json()
    assert slack["target"] == "slack://***"
    assert client.post("/api/v1/alerts/channels", json={"name": "ops", "kind": "webhook",
                                                         "target": secret_url}).status_code == 400
    assert client.delete(f"/api/v1/alerts/channels/{created['id']}").status_code == 204
    assert client.delete(f"/api/v1/alerts/channels/{created['id']}").status_code == 404
    assert client.delete("/api/v1/alerts/channels/not-a-number").status_code == 404
    assert client.delete(f"/api/v1/alerts/channels/{2**70}").status_code == 404
    assert client.patch(f"/api/v1/alerts/rules/{2**40}", json={"name": "x"}).status_code == 404


@pytest.mark.parametrize("body, words", [
    ({"name": "x", "kind": "sms", "target": "123"}, "webhook"),
    ({"name": "x", "kind": "webhook", "target": "ftp://nope"}, "http"),
    ({"name": "x", "kind": "email", "target": "not an address"}, "addresses"),
    ({"name": "x", "kind": "apprise", "target": "nosuchservice://abc"}, "apprise"),
    ({"name": "", "kind": "webhook", "target": "http://a"}, "name"),
    ({"name": "x\u0000", "kind": "webhook", "target": "http://a"}, "NUL"),
    ({"name": "x", "kind": "webhook", "target": "http://a", "extra": 1}, "extra"),
])
def test_bad_channels_are_422_and_store_nothing(client, body, words):
    answer = client.post("/api/v1/alerts/channels", json=body)
    assert answer.status_code == 422
    assert words.lower() in str(answer.get_json()["detail"]).lower()
    assert client.get("/api/v1/alerts/channels").get_json() == []


@pytest.fixture
def channel_id(client):
    return client.post("/api/v1/alerts/channels", json={"name": "ops", "kind": "webhook",
                                                         "target": "http://127.0.0.1:9/hook"}).get_json()["id"]


@pytest.mark.parametrize("fields, words", [
    ({"on": "missing", "schedule": "61 2 * * *"}, "cron"),
    ({"on": "missing", "schedule": "30 2 * *"}, "5 fields"),
    ({"on": "missing", "schedule": "30 2 * * *", "timezone": "Mars/Olympus"}, "time zone"),
    ({"on": "missing", "schedule": "30 2 * * *", "agent_name": "*"}, '"*"'),
    ({"on": "missing"}, "schedule"),
    ({"on": "missing", "schedule": "30 2 * * *", "period_seconds": 3600}, "either"),
    ({"on": "failure", "schedule": "30 2 * * *"}, "missing rules"),
    ({"on": "slow"}, "duration_ms_over"),
    ({"on": "failure", "success_rate_below": 0.5}, "window_minutes"),
    ({"on": "failure", "channels": [999999]}, "unknown channel"),
    ({"on": "failure", "repeat_minutes": -1}, "repeat_minutes"),
    ({"on": "slow", "duration_ms_over": 2**40}, "duration_ms_over"),
    ({"on": "failure", "channels": [2**40]}, "channel ids"),
    ({"on": "sometimes"}, "on"),
    ({"on": "failure", "channels": "1"}, "channels"),
])
def test_bad_rules_are_422_and_store_nothing(client, channel_id, fields, words):
    body = {"name": "r", "agent_name": "etl", "channels": [channel_id], "notify_resolved": True,
            "repeat_minutes": 0, **fields}
    answer = client.post("/api/v1/alerts/rules", json=body)
    assert answer.status_code == 422, answer.get_json()
    assert words.lower() in str(answer.get_json()["detail"]).lower()
    assert client.get("/api/v1/alerts/rules").get_json() == []


def test_rules_are_created_changed_and_deleted(client, channel_id):
    body = {"name": "etl late", "agent_name": "nightly-etl", "on": "missing", "channels": [channel_id],
            "notify_resolved": False, "repeat_minutes": 60, "schedule": "30 2 * * *", "grace_seconds": 600,
            "timezone": "Europe/Berlin"}
    rule = client.post("/api/v1/alerts/rules", json=body).get_json()
    assert rule["on"] == "missing" and rule["channels"] == [channel_id] and rule["notify_resolved"] is False
    assert rule["timezone"] == "Europe/Berlin" and rule["grace_seconds"] == 600
    changed = client.patch(f"/api/v1/alerts/rules/{rule['id']}", json={"schedule": "0 3 * * 1-5"})
    assert changed.status_code == 200 and changed.get_json()["schedule"] == "0 3 * * 1-5"
    bad = client.patch(f"/api/v1/alerts/rules/{rule['id']}", json={"agent_name": "*"})
    assert bad.status_code == 422
    assert client.patch(f"/api/v1/alerts/rules/{rule['id']}", json={"timezone": "Nowhere/Land"}).status_code == 422
    assert client.get("/api/v1/alerts/rules").get_json()[0]["agent_name"] == "nightly-etl"
    assert client.patch("/api/v1/alerts/rules/424242", json={"name": "x"}).status_code == 404
    assert client.delete(f"/api/v1/alerts/rules/{rule['id']}").status_code == 204
    assert client.get("/api/v1/alerts/rules").get_json() == []


def test_a_null_for_a_field_with_a_default_means_the_default(client):
    # Schemathesis found it: "grace_seconds": null was stored as NULL into a NOT NULL column (500).
    nulls = {"failures_in_a_row": None, "grace_seconds": None, "timezone": None}
    body = {"name": "late", "agent_name": "etl", "on": "missing", "channels": [], "period_seconds": 3600, **nulls}
    created = client.post("/api/v1/alerts/rules", json=body)
    assert created.status_code == 201, created.get_json()
    rule = created.get_json()
    assert (rule["failures_in_a_row"], rule["grace_seconds"], rule["timezone"]) == (1, 0, "UTC")
    changed = client.patch(f"/api/v1/alerts/rules/{rule['id']}", json={"grace_seconds": 600, "timezone": "Europe/Berlin"})
    assert changed.get_json()["grace_seconds"] == 600
    reset = client.patch(f"/api/v1/alerts/rules/{rule['id']}",
                         json={**nulls, "notify_resolved": None, "repeat_minutes": None})
    assert reset.status_code == 200, reset.get_json()
    answer = reset.get_json()
    assert (answer["grace_seconds"], answer["timezone"], answer["notify_resolved"], answer["repeat_minutes"]) == (
        0, "UTC", True, 0)


@pytest.mark.parametrize("body, words", [
    ({"until": "2030-01-01T00:00:00Z"}, "either"),
    ({"agent_name": "a", "rule_id": 1, "until": "2030-01-01T00:00:00Z"}, "either"),
    ({"agent_name": "a", "until": "2030-01-01T00:00:00"}, "time zone"),
    ({"agent_name": "a", "until": "tomorrow"}, "until"),
    ({"rule_id": 777, "until": "2030-01-01T00:00:00Z"}, "unknown rule"),
    ({"agent_name": "a", "until": "0001-01-01T00:00:00+01:00"}, "out of range"),
    ({"rule_id": 2**40, "until": "2030-01-01T00:00:00Z"}, "rule_id"),
])
def test_bad_mutes_are_422(client, body, words):
    answer = client.post("/api/v1/alerts/mute", json=body)
    assert answer.status_code == 422
    assert words.lower() in str(answer.get_json()["detail"]).lower()
    assert client.get("/api/v1/alerts/mute").get_json() == []


def test_incident_filters_are_checked(client):
    assert client.get("/api/v1/alerts/incidents?state=closed").status_code == 422
    assert client.get("/api/v1/alerts/incidents?state=open").get_json() == []


def test_the_routes_are_in_the_openapi_document(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    for path in ("/api/v1/alerts/channels", "/api/v1/alerts/channels/{channel_id}",
                 "/api/v1/alerts/channels/{channel_id}/test", "/api/v1/alerts/rules",
                 "/api/v1/alerts/rules/{rule_id}", "/api/v1/alerts/incidents", "/api/v1/alerts/mute",
                 "/api/v1/alerts/mute/{mute_id}"):
        assert path in paths


def test_send_test_answers_the_outcome(client, receiver):
    ok = client.post("/api/v1/alerts/channels", json={"name": "ok", "kind": "webhook", "target": receiver.url})
    answer = client.post(f"/api/v1/alerts/channels/{ok.get_json()['id']}/test")
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "sent"
    assert receiver.documents[0]["kind"] == "test"
    closed = f"http://127.0.0.1:{free_port()}/secret-path"
    down = client.post("/api/v1/alerts/channels", json={"name": "down", "kind": "webhook", "target": closed})
    answer = client.post(f"/api/v1/alerts/channels/{down.get_json()['id']}/test").get_json()
    assert answer["outcome"] == "failed" and "secret-path" not in (answer["error"] or "")
    assert client.post("/api/v1/alerts/channels/99999/test").status_code == 404


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, mailbox
    controller.stop()


@pytest.fixture
def settings(env, request):
    extra = {}
    if "smtp_server" in request.fixturenames:
        controller = request.getfixturevalue("smtp_server")[0]
        extra["TELEMETRY_SMTP_URL"] = f"smtp://127.0.0.1:{controller.port}?from=alerts@telemetry.test"
    return load_settings({**env, **extra})


def test_email_reaches_a_real_smtp_server(smtp_server, alerts, client):
    _controller, mailbox = smtp_server
    channel = alerts.channel("oncall@example.com, second@example.com", kind="email")
    assert client.post(f"/api/v1/alerts/channels/{channel}/test").get_json()["outcome"] == "sent"
    alerts.rule([channel])
    alerts.run("failure", error_summary="disk full")
    assert alerts.tick()["sent"] == 1
    test_mail, alert_mail = mailbox.messages
    assert alert_mail.rcpt_tos == ["oncall@example.com", "second@example.com"]
    assert alert_mail.mail_from == "alerts@telemetry.test"
    text = alert_mail.content.decode()
    assert "Subject: etl (nightly) failed" in text and "disk full" in text
    (incident,) = alerts.incidents()
    assert incident["notifications"] == 1


def test_apprise_json_urls_reach_a_local_server(alerts, receiver, client):
    target = receiver.url.replace("http://", "json://")
    channel = alerts.channel(target, kind="apprise")
    assert client.get("/api/v1/alerts/channels").get_json()[0]["target"] == "json://***"
    alerts.rule([channel])
    alerts.run("failure")
    assert alerts.tick()["sent"] == 1
    (document,) = receiver.documents
    assert document["title"] == "etl (nightly) failed"
    assert "run r-" in document["message"]


def test_an_smtp_server_that_is_down_is_a_failed_try(alerts, env, db, clock):
    from console.alerts import deliver

    settings = load_settings({**env, "TELEMETRY_SMTP_URL": f"smtp://127.0.0.1:{free_port()}"})
    alerts.settings = settings
    channel = alerts.channel("oncall@example.com", kind="email")
    alerts.rule([channel])
    alerts.run("failure")
    assert alerts.tick()["failed"] == 1
    assert deliver.deliver_due(db, settings, clock, "t") == {"sent": 0, "failed": 0, "rejected": 0}


def test_many_clients_sending_bad_rules_at_once_store_nothing(client):
    """Bad bodies from 50 clients at once: each a 422, nothing stored."""
    errors = []

    def send(index: int) -> None:
        answer = client.post("/api/v1/alerts/rules", json={"name": "r", "agent_name": "*", "on": "missing",
                                                            "channels": [], "schedule": f"{index} 2 * * *"})
        if answer.status_code != 422:
            errors.append(answer.status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert client.get("/api/v1/alerts/rules").get_json() == []


def test_every_alerts_route_needs_an_operator_token_when_auth_is_on_reads_included(tmp_path):
    from console.app import create_app
    from console.core.settings import load_settings
    from console.store import migrate

    env = {"TELEMETRY_BASE_DIR": str(tmp_path), "TELEMETRY_API_AUTH_ENABLED": "true",
           "TELEMETRY_AGENT_TOKENS": "agent-token", "TELEMETRY_OPERATOR_TOKENS": "operator-token"}
    settings = load_settings(env)
    migrate.upgrade(settings)
    app = create_app(settings, {"TESTING": True})
    client = app.test_client()
    try:
        for path in ("/api/v1/alerts/channels", "/api/v1/alerts/rules", "/api/v1/alerts/incidents",
                     "/api/v1/alerts/mute"):
            assert client.get(path).status_code == 401, path  # reads are open elsewhere, not here
            agent = client.get(path, headers={"Authorization": "Bearer agent-token"})
            assert agent.status_code == 403 and "operator token" in agent.get_json()["detail"], path
            assert client.get(path, headers={"Authorization": "Bearer operator-token"}).status_code == 200, path
        assert client.get("/api/v1/runs").status_code == 200  # the runs stay open to reads
    finally:
        app.extensions["telemetry_db"].dispose()
