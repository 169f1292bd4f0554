"""The Jobs page in a real browser, on a console that runs no scheduler (as `serve` in the tests does)."""

from __future__ import annotations


def test_run_now_without_a_scheduler_says_nothing_will_pick_it_up_and_how_to_run_it(server, page):
    page.goto(server.url + "/jobs")
    notice = page.get_by_role("status").filter(has_text="No scheduler is running")
    assert "python -m console jobs run NAME" in notice.inner_text()
    row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="backup", exact=True))
    row.get_by_role("button", name="Run now").click()
    answer = row.get_by_text("requested, but nothing will pick it up")
    answer.wait_for()
    assert "python -m console jobs run backup" in answer.inner_text()
    assert row.get_by_role("button", name="Run now").count() == 0
