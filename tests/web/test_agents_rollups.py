"""The agents page's figures come from the rollups and equal what the stored rows say:
runs in 24 h and 7 days, and each day's runs per status in the 30-day chart, after
batches, single POSTs, status changes, deletes and retention."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from console.jobs.retention import apply_retention
from tests.web.test_runs_counts_rollups import record

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"])


def cards(body: str) -> dict[str, str]:
    """Each agent's card on the page, by agent name."""
    out = {}
    for card in body.split('<section class="panel agent-card"')[1:]:
        name = re.search(r'href="/\?agent=[^"]*">([^<]+)</a>', card).group(1)
        out[name] = card
    return out


def shown(card: str) -> tuple[int, int, dict[str, Counter]]:
    """(runs in 24 h, runs in 7 days, runs per day and status in the chart)."""
    day = int(re.search(r"<dt>Runs 24 h</dt><dd>([\d\u2009]+)<", card).group(1).replace("\u2009", ""))
    week = int(re.search(r"<dt>Runs 7 d</dt><dd>([\d\u2009]+)<", card).group(1).replace("\u2009", ""))
    chart = {}
    for date, parts in re.findall(r"<title>(\d{4}-\d\d-\d\d): ([^<]+)</title>", card):
        if parts != "no runs":
            chart[date] = Counter({status: int(n) for n, status in (p.split(" ") for p in parts.split(", "))})
    return day, week, chart


def stored(client) -> tuple[dict[str, int], dict[str, int], dict[str, dict[str, Counter]]]:
    """The same figures counted from the rows the API lists."""
    rows = client.get("/api/v1/runs?limit=1000").get_json()
    now = datetime.now(UTC)
    day_from = (now - timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
    week_from = (now - timedelta(days=7)).replace(minute=0, second=0, microsecond=0)
    chart_from = (now - timedelta(days=29)).date()
    day, week = Counter(), Counter()
    chart: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for row in rows:
        start = datetime.fromisoformat(row["start_time"])
        day[row["agent_name"]] += start >= day_from
        week[row["agent_name"]] += start >= week_from
        if start.date() >= chart_from:
            chart[row["agent_name"]][start.date().isoformat()][row["status"]] += 1
    return day, week, chart


def assert_page_matches_rows(client) -> None:
    page = cards(client.get("/agents").get_data(as_text=True))
    day, week, chart = stored(client)
    assert set(page) == set(day)
    for agent, card in page.items():
        assert shown(card) == (day[agent], week[agent], dict(chart[agent])), agent


def test_agents_page_figures_equal_the_rows_after_every_kind_of_write(client, db, backend, slow_idle_catch_up):
    assert client.post("/api/v1/runs/batch", json=[record(n) for n in range(90)]).get_json()["inserted"] == 90
    for n in range(90, 100):
        assert client.post("/api/v1/runs", json=record(n)).status_code == 201
    assert_page_matches_rows(client)
    for n in range(0, 100, 7):
        assert client.patch(f"/api/v1/runs/evt-{n:04d}", json={"status": "timeout"}).status_code == 200
    for n in range(2, 100, 13):
        client.delete(f"/api/v1/runs/evt-{n:04d}")
    assert apply_retention(db, 20)["runs_deleted"] > 0
    assert_page_matches_rows(client)


def test_agents_come_a_page_at_a_time_each_card_counted_from_its_own_rows(client, backend):
    """120 agents fill pages in name order; every card on every page shows its own agent's
    figures (the page reads the rollups of its agents only)."""
    from console.web.agents import AGENTS_PER_PAGE

    names = [f"agent-{i:03d}" for i in range(120)]
    bodies = [record(n, agent_name=names[n % 120], event_id=f"evt-{n:04d}") for n in range(360)]
    assert client.post("/api/v1/runs/batch", json=bodies).get_json()["inserted"] == 360
    day, week, chart = stored(client)
    seen = []
    pages = -(-120 // AGENTS_PER_PAGE)
    assert pages > 1
    for number in range(1, pages + 1):
        response = client.get(f"/agents?page={number}")
        assert response.status_code == 200
        body = response.get_data(as_text=True)
        page = cards(body)
        first = (number - 1) * AGENTS_PER_PAGE
        assert list(page) == names[first:first + AGENTS_PER_PAGE]
        assert f"Agents {first + 1}–{first + len(page)} of 120" in body
        for agent, card in page.items():
            assert shown(card) == (day[agent], week[agent], dict(chart[agent])), agent
        seen += page
    assert seen == names
    assert 'href="/agents?page=2" rel="next"' in client.get("/agents").get_data(as_text=True)


@pytest.mark.parametrize("asked, status, says", [
    ("6", 404, "There is no page 6: 120 agents fill 5 pages."),
    ("0", 400, "The page must be a whole number from 1, not &#39;0&#39;."),
    ("-1", 400, "The page must be a whole number from 1"),
    ("two", 400, "The page must be a whole number from 1, not &#39;two&#39;."),
    ("9" * 400, 400, "The page must be a whole number from 1"),
])
def test_a_page_of_agents_that_does_not_exist_says_so_and_shows_the_first(client, backend, asked, status, says):
    bodies = [record(n, agent_name=f"agent-{n:03d}", event_id=f"evt-{n:04d}") for n in range(120)]
    assert client.post("/api/v1/runs/batch", json=bodies).get_json()["inserted"] == 120
    response = client.get(f"/agents?page={asked}")
    body = response.get_data(as_text=True)
    assert response.status_code == status
    assert says in body
    assert list(cards(body))[0] == "agent-000"
