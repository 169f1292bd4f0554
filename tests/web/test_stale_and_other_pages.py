"""Stale triage, the agents and jobs pages, security headers and htmx's own file."""

from __future__ import annotations

import re

from tests.web.conftest import HTMX, hours_ago, minutes_ago_on_one_day


def text(response) -> str:
    return response.get_data(as_text=True)


def test_stale_lists_silent_running_runs_oldest_first(client, make_run):
    make_run(run_id="silent-3h", status="running", start_time=hours_ago(3))
    make_run(run_id="silent-2h", status="running", start_time=hours_ago(2))
    make_run(run_id="fresh", status="running", start_time=hours_ago(0.1))
    make_run(run_id="done", status="success", start_time=hours_ago(5))
    body = text(client.get("/stale"))
    assert "silent-3h" in body and "silent-2h" in body
    assert "fresh" not in body and "done" not in body
    assert body.index("silent-3h") < body.index("silent-2h")
    assert re.search(r"3 h 0[01] m|2 h 59 m", body)


def test_the_threshold_can_be_changed_and_the_partial_comes_alone(client, make_run):
    make_run(run_id="silent-10m", status="running", start_time=hours_ago(10 / 60))
    assert "silent-10m" not in text(client.get("/stale"))
    response = client.get("/stale?older_than_minutes=5", headers=HTMX)
    assert response.status_code == 200
    assert text(response).lstrip().startswith('<section id="stale-results"') and "silent-10m" in text(response)
    assert client.get("/stale?older_than_minutes=abc").status_code == 400


def test_no_stale_runs_is_an_empty_state(client):
    assert "No stale runs" in text(client.get("/stale"))


def test_marking_selected_runs_failed_asks_first_then_changes_only_those(client, csrf, make_run):
    a = make_run(status="running", start_time=hours_ago(3))
    b = make_run(status="running", start_time=hours_ago(3))
    c = make_run(status="running", start_time=hours_ago(3))
    ask = client.post("/stale/mark-failed", data={"csrf_token": csrf, "event_id": [a, b], "older_than_minutes": "60"})
    assert ask.status_code == 200 and "Mark 2 runs failed?" in text(ask)
    assert client.get(f"/api/v1/runs/{a}").get_json()["status"] == "running"
    done = client.post("/stale/mark-failed", data={
        "csrf_token": csrf, "event_id": [a, b], "older_than_minutes": "60", "confirm": "yes", "reason": "zombies"})
    assert done.status_code == 303
    page = text(client.get(done.headers["Location"]))
    assert "Marked 2 runs failed." in page
    assert a not in page and b not in page and c in page
    for event_id in (a, b):
        run = client.get(f"/api/v1/runs/{event_id}").get_json()
        assert run["status"] == "failure" and "zombies" in run["error_summary"]
    assert client.get(f"/api/v1/runs/{c}").get_json()["status"] == "running"


def test_mark_all_takes_every_listed_run(client, csrf, make_run):
    ids = [make_run(status="running", start_time=hours_ago(2)) for _ in range(3)]
    ask = text(client.post("/stale/mark-failed", data={"csrf_token": csrf, "all": "1", "older_than_minutes": "60"}))
    assert "Mark 3 runs failed?" in ask
    assert all(f'name="event_id" value="{e}"' in ask for e in ids)


def test_marking_nothing_says_so(client, csrf, make_run):
    make_run(status="running", start_time=hours_ago(2))
    response = client.post("/stale/mark-failed", data={"csrf_token": csrf, "older_than_minutes": "60"})
    assert response.status_code == 303
    assert "Select at least one run" in text(client.get(response.headers["Location"]))


def silent_runs(client, count: int) -> list[str]:
    """`count` running runs, the first the longest silent, posted in one batch; their run_ids."""
    bodies = [{"event_id": f"silent-{n:04d}", "run_id": f"silent-run-{n:04d}", "agent_name": "indexer",
               "job_type": "crawl", "status": "running", "start_time": hours_ago(5 - n / 1000)} for n in range(count)]
    assert client.post("/api/v1/runs/batch", json=bodies).get_json()["inserted"] == count
    return [body["run_id"] for body in bodies]


def listed(body: str) -> list[str]:
    return re.findall(r'aria-label="Select run ([^"]+)"', body)


def test_stale_runs_come_a_page_of_100_at_a_time_oldest_first(client):
    from console.web.stale import PER_PAGE

    run_ids = silent_runs(client, 250)
    seen = []
    for number in (1, 2, 3):
        body = text(client.get(f"/stale?page={number}&older_than_minutes=60"))
        first = (number - 1) * PER_PAGE
        assert listed(body) == run_ids[first:first + PER_PAGE]
        assert '<strong id="stale-count">250</strong> stale runs' in body
        assert f"Stale runs {first + 1}–{first + len(listed(body))} of 250" in body
        seen += listed(body)
    assert seen == run_ids
    assert "Mark 100 on this page failed" in text(client.get("/stale"))
    assert 'href="/stale?page=2&amp;older_than_minutes=60" rel="next"' in text(client.get("/stale"))
    past = client.get("/stale?page=4")
    assert past.status_code == 404 and "There is no page 4: 250 stale runs fill 3 pages." in text(past)
    assert client.get("/stale?page=zero").status_code == 400
    assert client.get("/stale?page=0").status_code == 400


def test_past_the_counted_stale_runs_the_page_says_or_more(client, monkeypatch):
    monkeypatch.setattr("console.web.stale.COUNTED", 120)
    silent_runs(client, 130)
    body = text(client.get("/stale"))
    assert '<strong id="stale-count">120 or more</strong>' in body
    assert "Stale runs 1–100 of 120 or more" in body


def test_mark_all_on_a_page_takes_that_page_and_a_selection_from_any_page_is_found(client, csrf):
    run_ids = silent_runs(client, 150)
    ask = text(client.post("/stale/mark-failed", data={
        "csrf_token": csrf, "all": "1", "page": "2", "older_than_minutes": "60"}))
    assert "Mark 50 runs failed?" in ask
    assert all(f'name="event_id" value="silent-{n:04d}"' in ask for n in range(100, 150))
    assert 'value="silent-0099"' not in ask
    picked = text(client.post("/stale/mark-failed", data={
        "csrf_token": csrf, "event_id": ["silent-0140", "silent-0003", "not-a-run"], "older_than_minutes": "60"}))
    assert "Mark 2 runs failed?" in picked and run_ids[140] in picked and run_ids[3] in picked


def test_agents_page_links_to_the_filtered_runs(client, make_run):
    make_run(agent_name="crawler")
    body = text(client.get("/agents"))
    assert 'href="/?agent=crawler"' in body


def test_agents_page_shows_rates_durations_last_run_and_a_30_day_svg_chart(client, make_run):
    # Three runs on one day (one day's bar, split by status), one three days before.
    for status, start in zip(("success", "success", "failure"), minutes_ago_on_one_day(1, 2, 3), strict=True):
        make_run(agent_name="crawler", status=status, duration_ms=60_000, start_time=start)
    make_run(agent_name="crawler", run_id="last-one", status="success", duration_ms=60_000, start_time=hours_ago(24 * 3))
    body = text(client.get("/agents"))
    stats = re.search(r'<dl class="stats">.*?</dl>', body, re.S).group(0)
    assert re.search(r"Runs 24 h</dt><dd>3<", stats)
    assert re.search(r"Success 24 h</dt><dd>66.7 %<", stats)
    assert re.search(r"Runs 7 d</dt><dd>4<", stats)
    assert re.search(r"p50 \(7 d\)</dt><dd>(5\d s|1 m \d s)<", stats), stats
    assert "<svg class=\"chart\"" in body and 'role="img"' in body
    assert body.count('<rect class="s-success"') == 2 and body.count('<rect class="s-failure"') == 1
    assert re.search(r"<title>\d{4}-\d\d-\d\d: 2 success, 1 failure</title>", body)
    assert "Last run <a href=\"/runs/" in body and ">last-one</a>" in body  # newest by created_at, as on Runs


def test_agents_page_without_runs_is_an_empty_state(client):
    assert "No agents have reported yet." in text(client.get("/agents"))


def test_jobs_has_its_place_in_the_navigation(client):
    body = text(client.get("/jobs"))
    assert 'href="/jobs" aria-current="page"' in body


def test_pages_carry_the_strict_csp_and_no_inline_code(client, make_run):
    event_id = make_run(status="running", start_time=hours_ago(3), error_summary="x")
    for path in ("/", "/?q=x", f"/runs/{event_id}", f"/runs/{event_id}/delete", "/stale", "/agents", "/jobs"):
        response = client.get(path)
        assert response.headers["Content-Security-Policy"] == (
            "default-src 'self'; base-uri 'none'; form-action 'self'; object-src 'none'; frame-ancestors 'none'"), path
        assert response.headers["Referrer-Policy"] == "same-origin", path
        assert response.headers["Cache-Control"] == "no-store", path
        body = text(response)
        assert not re.search(r"<script(?![^>]*\bsrc=)", body), path
        assert not re.search(r"\sstyle=|\son[a-z]+=|hx-on|js:", body), path


def test_htmx_is_served_from_the_installed_package(client):
    response = client.get("/assets/htmx.min.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert b"htmx" in response.data[:2000]


def test_the_htmx_config_turns_off_injected_styles(client):
    assert '"includeIndicatorStyles":false' in text(client.get("/"))
