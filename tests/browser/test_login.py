"""Logging in with the API token when auth is on."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import TOKEN, post_runs, run_record, shot

pytestmark = pytest.mark.browser


def test_logging_in_with_the_token_opens_the_page_asked_for(auth_server, page):
    post_runs(auth_server, [run_record(agent_name="secured", run_id="secured-run")], token=TOKEN)
    page.goto(auth_server.url + "/stale")
    page.wait_for_url(re.compile(r"/login\?next="))
    shot(page, "login")
    page.fill("#password", TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(auth_server.url + "/stale")
    page.get_by_role("link", name="Runs").click()
    page.locator("#runs-body tr", has_text="secured-run").wait_for()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login"))
    page.goto(auth_server.url + "/")
    page.wait_for_url(re.compile(r"/login\?next="))
