"""The Alerts page in a real Chromium: a channel and its test, a rule from the form, an incident from a
failed run (the console's own leader evaluates), the navigation count, a mute, editing a rule."""

from __future__ import annotations

import time

import pytest
import requests

from tests.alerts.conftest import Receiver
from tests.browser.conftest import post_runs, run_record, shot, start_console

pytestmark = pytest.mark.browser


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def alerting_server(tmp_path):
    process = start_console(tmp_path / "console", TELEMETRY_SCHEDULER_ENABLED="true",
                            TELEMETRY_ALERT_EVALUATE_SECONDS="2", TELEMETRY_SCHEDULER_LEASE_SECONDS="2")
    yield process
    process.stop()


def test_an_operator_sets_up_alerting_and_sees_an_incident(alerting_server, page, receiver):
    page.goto(alerting_server.url + "/alerts")
    page.evaluate("window.__notReloaded = true")
    page.fill("#channel-form input[name=name]", "ops-hook")
    page.fill("#channel-form input[name=target]", receiver.url + "?token=hush")
    page.click("#channel-form button[type=submit]")
    row = page.locator("#channels tr", has_text="ops-hook")
    row.wait_for()
    assert "hush" not in page.content()

    row.get_by_role("button", name="Send test").click()
    page.locator(".test-result", has_text="Test sent").wait_for()
    assert receiver.documents[0]["kind"] == "test"

    page.fill("#rule-form input[name=name]", "anything failed")
    page.fill("#rule-form input[name=agent_name]", "*")
    page.check("#rule-form input[name=channels]")
    page.click("#rule-form button[type=submit]")
    page.locator("#rules tr", has_text="anything failed").wait_for()
    assert page.evaluate("window.__notReloaded") is True  # htmx swapped the section in place

    # A bad schedule is answered in the form.
    page.fill("#rule-form input[name=name]", "late")
    page.select_option("#rule-form select[name=on]", "missing")
    page.fill("#rule-form input[name=agent_name]", "nightly")
    page.fill("#rule-form input[name=schedule]", "99 2 * * *")
    page.click("#rule-form button[type=submit]")
    page.locator("#rule-form .error", has_text="cron").wait_for()

    post_runs(alerting_server, [run_record(agent_name="loader", status="failure", error_summary="disk full")])
    receiver.wait_for(2, 60)
    assert receiver.documents[1]["agent_name"] == "loader"
    # The console records the delivery just after the receiver answered (hang guard only).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = requests.get(alerting_server.url + "/api/v1/alerts/incidents", timeout=10).json()
        if found and found[0]["notifications"] == 1:
            break
        time.sleep(0.1)
    page.goto(alerting_server.url + "/alerts")
    page.locator("#incidents-h", has_text="Open incidents (1)").wait_for()
    assert page.locator("nav .alert-count").inner_text() == "1"
    assert page.locator("tr", has_text="loader").locator(".delivery-sent").count() == 1
    shot(page, "alerts")

    page.goto(alerting_server.url + "/agents")
    page.locator(".agent-incidents", has_text="1 open incident").wait_for()

    page.goto(alerting_server.url + "/alerts")
    page.fill("#mute-form input[name=agent_name]", "loader")
    page.click("#mute-form button[type=submit]")
    page.locator("#mutes li", has_text="loader").wait_for()

    page.locator("#rules tr", has_text="anything failed").get_by_role("link", name="Edit").click()
    page.locator("#rule-form h3", has_text="Edit rule").wait_for()
    page.fill("#rule-form input[name=name]", "anything failed, renamed")
    page.click("#rule-form button[type=submit]")
    page.locator("#rules tr", has_text="anything failed, renamed").wait_for()
    rules = requests.get(alerting_server.url + "/api/v1/alerts/rules", timeout=10).json()
    assert [r["name"] for r in rules] == ["anything failed, renamed"]
