"""The operator's flows in a real Chromium: filter, open a run, link a commit, triage stale runs."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import ago, post_runs, run_record, shot

pytestmark = pytest.mark.browser


def test_filtering_the_runs_page_swaps_the_table_and_keeps_the_url(server, page):
    post_runs(server, [
        run_record(agent_name="filter-alpha", run_id="alpha-ok-1"),
        run_record(agent_name="filter-alpha", run_id="alpha-failed-1", status="failure",
                   error_summary="TimeoutError: upstream did not answer"),
        run_record(agent_name="filter-beta", run_id="beta-running-1", status="running", end_time=None, duration_ms=0),
    ])
    page.goto(server.url + "/")
    page.evaluate("window.__notReloaded = true")
    assert page.locator("#runs-body tr", has_text="beta-running-1").count() == 1
    # <time> shows local time, UTC on hover (set by console.js).
    assert page.locator("time[data-local]").first.get_attribute("title").endswith("UTC")
    shot(page, "runs")

    page.select_option("select[name=status]", "failure")
    page.wait_for_url(re.compile(r"status=failure"))
    page.locator("#runs-body tr", has_text="beta-running-1").wait_for(state="detached")
    assert page.locator("#runs-body tr", has_text="alpha-failed-1").count() == 1
    assert page.evaluate("window.__notReloaded") is True  # swapped in place, no reload

    page.fill("#q", "upstream did not")
    page.wait_for_url(re.compile(r"q=upstream"))
    page.locator("#runs-body tr", has_text="alpha-failed-1").wait_for()
    assert page.locator("#runs-body tr").count() == 1
    # Free text is counted in a deferred partial.
    page.locator("#status-counts a.s-failure strong").wait_for()
    assert page.locator("#status-counts a.s-failure strong").inner_text() == "1"
    assert "agent=" not in page.url  # empty filters stay out of the URL
    shot(page, "runs-filtered")

    # One step at a time: a second Back while the first restore is still being
    # fetched could let that late answer land on the first page.
    page.go_back()
    page.wait_for_url(lambda url: "status=failure" in url and "q=" not in url)
    page.locator("#runs-body tr", has_text="alpha-failed-1").wait_for()
    page.go_back()
    page.wait_for_url(server.url + "/")
    page.locator("#runs-body tr", has_text="beta-running-1").wait_for()

    # The filtered URL is a real page: bookmarkable, shareable.
    page.goto(server.url + "/?agent=filter-alpha&status=failure")
    assert page.locator("select[name=agent]").input_value() == "filter-alpha"
    assert page.locator("#runs-body tr").count() == 1


def test_host_and_environment_filters_and_the_download_follow_the_form(server, page):
    post_runs(server, [
        run_record(agent_name="fleet", run_id="fleet-web-prod", host="fleet-web", environment="fleet-prod"),
        run_record(agent_name="fleet", run_id="fleet-web-dev", host="fleet-web", environment="fleet-dev"),
        run_record(agent_name="fleet", run_id="fleet-db-prod", host="fleet-db", environment="fleet-prod"),
    ])
    page.goto(server.url + "/?agent=fleet")
    page.select_option("select[name=host]", "fleet-web")
    page.wait_for_url(re.compile(r"host=fleet-web"))
    page.locator("#runs-body tr", has_text="fleet-db-prod").wait_for(state="detached")
    page.select_option("select[name=environment]", "fleet-prod")
    page.wait_for_url(re.compile(r"environment=fleet-prod"))
    page.locator("#runs-body tr", has_text="fleet-web-dev").wait_for(state="detached")
    assert page.locator("#runs-body tr").count() == 1

    link = page.get_by_role("link", name="CSV")
    assert "host=fleet-web" in link.get_attribute("href") and "environment=fleet-prod" in link.get_attribute("href")
    with page.expect_download() as caught:
        link.click()
    lines = open(caught.value.path()).read().splitlines()
    assert len(lines) == 2 and "fleet-web-prod" in lines[1]


def test_older_runs_appends_the_next_page_and_new_runs_appear_while_open(server, page):
    post_runs(server, [run_record(agent_name="pager", run_id=f"pager-{i:02d}") for i in range(55)])
    page.goto(server.url + "/?agent=pager")
    assert page.locator("#runs-body tr:not(.more)").count() == 50
    page.get_by_role("link", name=re.compile("Older runs")).click()
    # One batch shares a created_at, and ties list in id order: pager-00 is on the first
    # page, so waiting for it raced the swap. Wait for the rows themselves.
    expect(page.locator("#runs-body tr:not(.more)")).to_have_count(55)
    assert page.locator("#runs-body tr", has_text="pager-54").count() == 1
    assert "cursor" not in page.url

    post_runs(server, [run_record(agent_name="pager", run_id="pager-arrived-later")])
    page.locator("#runs-body tr", has_text="pager-arrived-later").wait_for(timeout=12_000)
    assert page.locator("#runs-body tr").first.inner_text().find("pager-arrived-later") >= 0
    assert page.locator("#runs-body tr:not(.more)").count() == 56


def test_opening_a_run_and_linking_a_commit_shows_the_link(server, page):
    record = run_record(agent_name="linker", run_id="run-to-link", status="failure",
                        error_summary="KeyError: 'x'", error_details="Traceback (most recent call last):\n  File \"a.py\"",
                        git_repo="https://github.com/acme/agents.git", metrics_json={"pages": 3})
    post_runs(server, [record])
    page.goto(server.url + "/?agent=linker")
    page.get_by_role("link", name="run-to-link").click()
    page.wait_for_url(re.compile(r"/runs/" + record["event_id"]))
    assert page.locator("h1").inner_text() == "run-to-link"
    assert "Traceback (most recent call last)" in page.locator("pre.traceback").inner_text()

    page.fill("#commit_hash", "abc")
    page.get_by_role("button", name="Link commit").click()
    page.locator("#commit_hash-error").wait_for()
    assert "at least 7" in page.locator("#commit_hash-error").inner_text()
    assert page.locator("#commit_hash").get_attribute("aria-invalid") == "true"

    page.fill("#commit_hash", "0badc0ffee1234")
    page.select_option("#commit_source", "llm")
    page.fill("#commit_author", "review-bot")
    page.get_by_role("button", name="Link commit").click()
    link = page.locator('#commit a[href="https://github.com/acme/agents/commit/0badc0ffee1234"]')
    link.wait_for()
    assert page.locator("#commit_hash-error").count() == 0
    shot(page, "run-detail")
    stored = requests.get(f"{server.url}/api/v1/runs/{record['event_id']}", timeout=5).json()
    assert stored["git_commit_hash"] == "0badc0ffee1234" and stored["git_commit_author"] == "review-bot"
    assert stored["commit_url"] == "https://github.com/acme/agents/commit/0badc0ffee1234"


def test_triaging_stale_runs_marks_them_failed_and_they_leave_the_list(server, page):
    zombies = [run_record(agent_name="zombie", status="running", start_time=ago(hours=h), end_time=None,
                          duration_ms=0) for h in (5, 4, 3)]
    post_runs(server, zombies)
    page.goto(server.url + "/stale")
    for record in zombies:
        page.locator("tr", has_text=record["run_id"]).wait_for()
    shot(page, "stale")
    page.get_by_label(f"Select run {zombies[0]['run_id']}").check()
    page.get_by_label(f"Select run {zombies[1]['run_id']}").check()
    page.fill("input[name=reason]", "host was rebooted")
    page.get_by_role("button", name="Mark selected failed…").click()
    page.get_by_role("heading", name="Mark 2 runs failed?").wait_for()
    shot(page, "stale-confirm")
    page.get_by_role("button", name="Mark 2 failed").click()
    page.get_by_text("Marked 2 runs failed.").wait_for()
    assert page.locator("tr", has_text=zombies[0]["run_id"]).count() == 0
    assert page.locator("tr", has_text=zombies[1]["run_id"]).count() == 0
    assert page.locator("tr", has_text=zombies[2]["run_id"]).count() == 1
    for record, status in ((zombies[0], "failure"), (zombies[1], "failure"), (zombies[2], "running")):
        stored = requests.get(f"{server.url}/api/v1/runs/{record['event_id']}", timeout=5).json()
        assert stored["status"] == status
    assert "host was rebooted" in stored_summary(server, zombies[0]["event_id"])


def stored_summary(server, event_id: str) -> str:
    return requests.get(f"{server.url}/api/v1/runs/{event_id}", timeout=5).json()["error_summary"]


def test_the_select_all_box_selects_every_stale_run(server, page):
    post_runs(server, [run_record(agent_name="select-all", status="running", start_time=ago(hours=9),
                                  end_time=None, duration_ms=0) for _ in range(2)])
    page.goto(server.url + "/stale")
    page.get_by_label("Select all stale runs").check()
    boxes = page.locator("input[name=event_id]")
    assert boxes.count() >= 2
    assert all(boxes.nth(i).is_checked() for i in range(boxes.count()))


def test_pages_work_without_javascript(server, browser):
    post_runs(server, [run_record(agent_name="nojs", run_id="nojs-failed", status="failure")])
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(server.url + "/")
    page.select_option("select[name=agent]", "nojs")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"agent=nojs"))
    assert page.locator("#runs-body tr").count() == 1
    page.get_by_role("link", name="nojs-failed").click()
    page.wait_for_url(re.compile(r"/runs/"))
    assert page.locator("h1").inner_text() == "nojs-failed"
    context.close()


def test_agents_and_jobs_pages_render(server, page):
    post_runs(server, [run_record(agent_name="charted", status=s) for s in ("success", "success", "failure")])
    page.goto(server.url + "/agents")
    page.get_by_role("link", name="charted").first.wait_for()
    shot(page, "agents")
    page.get_by_role("link", name="Jobs").click()
    page.wait_for_url(server.url + "/jobs")
    assert page.locator("h1").inner_text() == "Jobs"


def test_polling_pauses_while_the_tab_is_hidden_and_catches_up_when_shown(server, page):
    post_runs(server, [run_record(agent_name="hidden-tab", run_id="hidden-first")])
    page.goto(server.url + "/?agent=hidden-tab")
    page.evaluate("""() => {
        window.__hidden = true;
        Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => window.__hidden ? 'hidden' : 'visible'});
    }""")
    post_runs(server, [run_record(agent_name="hidden-tab", run_id="hidden-later")])
    page.wait_for_timeout(6_500)  # more than one polling period
    assert page.locator("#runs-body tr", has_text="hidden-later").count() == 0
    page.evaluate("() => { window.__hidden = false; document.dispatchEvent(new Event('visibilitychange')); }")
    page.locator("#runs-body tr", has_text="hidden-later").wait_for(timeout=2_000)


def test_the_api_docs_render_under_their_policy(server, page):
    # A directive Swagger UI needs and the policy forbids shows as a console error (the fixture fails on it).
    response = page.goto(server.url + "/docs")
    assert "base-uri 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "same-origin"
    # Swagger UI's bundle and our init script ran under the policy (it mounts its root element).
    page.locator("#swagger-ui .swagger-ui").first.wait_for(state="attached")
    page.wait_for_load_state("networkidle")
