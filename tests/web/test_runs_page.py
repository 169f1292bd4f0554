"""The runs page: full page or partial, filters, counts, keyset paging, polling."""

from __future__ import annotations

import re
import uuid

from console.web import queries as web_queries
from tests.web.conftest import HTMX, hours_ago


def text(response) -> str:
    return response.get_data(as_text=True)


def test_it_renders_a_full_page_with_the_newest_runs_first(client, make_run):
    make_run(run_id="older-run", start_time=hours_ago(2))
    make_run(run_id="newer-run")
    response = client.get("/")
    body = text(response)
    assert response.status_code == 200
    assert body.startswith("<!doctype html>")
    assert body.index("newer-run") < body.index("older-run")
    assert 'hx-boost="true"' in body
    assert "/assets/htmx.min.js" in body
    assert "HX-Request" in response.headers["Vary"]


def test_an_htmx_request_gets_only_the_results_partial(client, make_run):
    make_run(run_id="the-run")
    response = client.get("/", headers=HTMX)
    body = text(response)
    assert response.status_code == 200
    assert "<html" not in body and "<nav" not in body
    assert body.lstrip().startswith('<section id="runs-results"')
    assert "the-run" in body
    assert "HX-Request" in response.headers["Vary"]


def test_a_boosted_navigation_or_history_restore_gets_the_full_page(client, make_run):
    make_run()
    boosted = client.get("/", headers={**HTMX, "HX-Boosted": "true"})
    restore = client.get("/", headers={**HTMX, "HX-History-Restore-Request": "true"})
    assert "<!doctype html>" in text(boosted)
    assert "<!doctype html>" in text(restore)


def test_filters_narrow_the_rows_and_stay_in_the_form(client, make_run):
    make_run(run_id="a-ok", agent_name="alpha", status="success", job_type="crawl")
    make_run(run_id="a-bad", agent_name="alpha", status="failure", job_type="crawl", error_summary="disk full")
    make_run(run_id="b-bad", agent_name="beta", status="failure", job_type="index")
    body = text(client.get("/?agent=alpha&status=failed"))  # an alias works as in the API
    assert "a-bad" in body and "a-ok" not in body and "b-bad" not in body
    assert '<option value="alpha" selected>' in body
    body = text(client.get("/?job_type=index"))
    assert "b-bad" in body and "a-bad" not in body
    body = text(client.get("/?q=disk+full"))
    assert "a-bad" in body and "b-bad" not in body
    body = text(client.get("/?q=b-ba"))
    assert "b-bad" in body and "a-bad" not in body


def test_the_time_range_filters_on_the_start_time(client, make_run):
    make_run(run_id="recent", start_time=hours_ago(0.2))
    make_run(run_id="last-week", start_time=hours_ago(24 * 5))
    body = text(client.get("/?range=24h"))
    assert "recent" in body and "last-week" not in body
    body = text(client.get("/?range=30d"))
    assert "recent" in body and "last-week" in body


def test_a_bad_filter_is_a_400_with_a_message_not_a_500(client, make_run):
    make_run()
    for query in ("status=bogus", "range=3y", "cursor=garbage"):
        response = client.get(f"/?{query}")
        assert response.status_code == 400, query
        assert 'role="alert"' in text(response)


def test_an_empty_database_shows_an_empty_state(client):
    body = text(client.get("/"))
    assert "No runs." in body
    assert "No runs match these filters." in text(client.get("/?agent=nobody"))


def test_older_runs_pages_by_keyset_as_partial_and_as_full_page(client, make_run):
    for i in range(55):
        make_run(run_id=f"page-run-{i:02d}")
    first = text(client.get("/"))
    assert first.count('title="page-run-') == 50
    cursor = re.search(r'cursor=([A-Za-z0-9_-]+)', first).group(1)
    partial = client.get(f"/?cursor={cursor}", headers=HTMX)
    rows = text(partial)
    assert "<html" not in rows and "runs-results" not in rows
    assert rows.count('title="page-run-') == 5 and "page-run-04" in rows and "page-run-00" in rows
    assert "Older runs" not in rows
    full = text(client.get(f"/?cursor={cursor}"))
    assert "<!doctype html>" in full and "Newest runs" in full and "page-run-00" in full


def test_counts_per_status_come_from_the_rollups_for_agent_status_and_range(client, make_run):
    make_run(status="success")
    make_run(status="failure")
    make_run(status="failure")
    body = text(client.get("/?range=24h"))
    counts = re.search(r'<div id="status-counts".*?</div>', body, re.S).group(0)
    assert re.search(r"failure <strong>2</strong>", counts)
    assert re.search(r"success <strong>1</strong>", counts)


def test_counts_for_free_text_are_deferred_and_capped(client, make_run, monkeypatch):
    for _ in range(3):
        make_run(status="failure", error_summary="boom")
    body = text(client.get("/?q=boom"))
    assert 'hx-get="/runs/counts?q=boom"' in body and 'hx-trigger="load"' in body
    counts = text(client.get("/runs/counts?q=boom", headers=HTMX))
    assert "failure <strong>3</strong>" in counts and "≥" not in counts
    monkeypatch.setattr(web_queries, "COUNT_CAP", 2)
    counts = text(client.get("/runs/counts?q=boom", headers=HTMX))
    assert "failure <strong>≥ 2</strong>" in counts
    assert "<!doctype html>" in text(client.get("/runs/counts?q=boom"))


def test_polling_answers_204_until_a_new_run_arrives(client, make_run):
    make_run(run_id="first")
    page = text(client.get("/"))
    poll_url = re.search(r'id="runs-poll"[^>]*hx-get="([^"]+)"', page, re.S).group(1).replace("&amp;", "&")
    assert 'hx-trigger="every 5s, poll-now"' in page
    assert client.get(poll_url, headers=HTMX).status_code == 204
    make_run(run_id="second")
    response = client.get(poll_url, headers=HTMX)
    body = text(response)
    assert response.status_code == 200
    assert 'hx-swap-oob="afterbegin:#runs-body"' in body and "second" in body and "first" not in body
    new_poll = re.search(r'id="runs-poll"[^>]*hx-get="([^"]+)"', body, re.S).group(1).replace("&amp;", "&")
    assert client.get(new_poll, headers=HTMX).status_code == 204


def test_polling_keeps_the_filters(client, make_run):
    make_run(agent_name="alpha")
    page = text(client.get("/?agent=alpha"))
    poll_url = re.search(r'id="runs-poll"[^>]*hx-get="([^"]+)"', page, re.S).group(1).replace("&amp;", "&")
    make_run(run_id="other-agent", agent_name="beta")
    assert client.get(poll_url, headers=HTMX).status_code == 204


def test_durations_and_times_are_readable(client, make_run):
    make_run(duration_ms=192_000, start_time="2026-01-12T10:30:00Z")
    body = text(client.get("/"))
    assert "3 m 12 s" in body
    assert '<time datetime="2026-01-12T10:30:00.000000+00:00"' in body


def test_user_data_is_escaped(client, make_run):
    make_run(run_id="<script>alert(1)</script>", agent_name="<b>x</b>", error_summary='"><img src=x>')
    body = text(client.get("/"))
    assert "<script>alert" not in body and "<b>x</b>" not in body and "<img src=x>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_counts_include_single_posts_the_rollups_have_not_caught_up_yet(client, slow_idle_catch_up):
    # Only the page's read catches the posted runs up.
    for status in ("failure", "failure", "success"):
        body = {"event_id": str(uuid.uuid4()), "run_id": "via-api", "agent_name": "poster",
                "job_type": "crawl", "start_time": hours_ago(0.5), "status": status, "duration_ms": 1000}
        assert client.post("/api/v1/runs", json=body).status_code == 201  # the group commit: uncounted
    counts = re.search(r'<div id="status-counts".*?</div>', text(client.get("/?range=24h&agent=poster")), re.S).group(0)
    assert re.search(r"failure <strong>2</strong>", counts) and re.search(r"success <strong>1</strong>", counts)
    agents = text(client.get("/agents"))
    assert re.search(r"Runs 24 h</dt><dd>3<", agents)
