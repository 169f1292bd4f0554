"""The runs page's status counts come from the rollups for an agent, a job type, a host or
an environment (with a status and a time range), and equal a count of the stored rows:
after batches, single POSTs, status changes, deletes, retention and other tools' writes."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest

from console.domain.validation import STATUSES
from console.jobs.retention import apply_retention
from console.web import queries as web_queries
from console.web.runs import PageFilters
from tests.web.conftest import HTMX

AGENTS = ("alpha", "beta", "gamma")
JOBS = ("crawl", "index")
HOSTS = ("h1", "h2", None)
ENVIRONMENTS = ("prod", "dev", None)
# Hours before now: this hour, earlier today or yesterday, within 7 days, within 30 days, older.
AGES = (0.2, 5, 30, 100, 400, 1000)


def text(response) -> str:
    return response.get_data(as_text=True)


def when(hours: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


def record(n: int, **overrides) -> dict:
    age = AGES[n % len(AGES)]
    status = STATUSES[n % len(STATUSES)]
    return {
        "event_id": f"evt-{n:04d}",
        "run_id": f"run-{n:04d}",
        "agent_name": AGENTS[n % 3],
        "job_type": JOBS[n % 2],
        "host": HOSTS[n % 3 if n % 7 else 2],
        "environment": ENVIRONMENTS[(n // 3) % 3],
        "start_time": when(age + (n % 5) / 10),
        "created_at": when(age),
        "status": status,
        "duration_ms": None if status == "running" else 1000 + n * 37,
        **overrides,
    }


@pytest.fixture(autouse=True)
def tiny_count_cap(monkeypatch):
    """A count that read the rows would stop at one row and say "≥ 1"."""
    monkeypatch.setattr(web_queries, "COUNT_CAP", 1)


def page_counts(client, query: dict) -> dict[str, int]:
    body = text(client.get("/runs/counts?" + urlencode(query), headers=HTMX))
    assert "≥" not in body  # counted from the rollups, not from the rows
    return {s: int(n.replace(",", "")) for s, n in re.findall(r"</span> (\w+) <strong>([\d,]+)</strong>", body)}


def row_counts(client, query: dict) -> dict[str, int]:
    """The same filter counted from the rows the API lists."""
    api = {"agent_name": query.get("agent"), "job_type": query.get("job_type"), "host": query.get("host"),
           "environment": query.get("environment"), "status": query.get("status"), "limit": 1000}
    since = PageFilters(range=query.get("range", "")).since()
    if since is not None:
        api["start_time_from"] = since.isoformat()
    rows = client.get("/api/v1/runs?" + urlencode({k: v for k, v in api.items() if v})).get_json()
    found = Counter(row["status"] for row in rows)
    return {s: found.get(s, 0) for s in STATUSES}


def assert_counts_match_rows(client) -> None:
    filters = [{"agent": a} for a in AGENTS] + [{"job_type": j} for j in JOBS]
    filters += [{"host": h} for h in HOSTS if h] + [{"environment": e} for e in ENVIRONMENTS if e] + [{}]
    for base in filters:
        for extra in ({}, {"range": "1h"}, {"range": "24h"}, {"range": "7d"}, {"range": "30d"}, {"status": "failure"},
                      {"status": "success", "range": "7d"}):
            query = {**base, **extra}
            assert page_counts(client, query) == row_counts(client, query), query


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_counts_from_the_rollups_equal_the_rows_after_every_kind_of_write(client, db, backend, slow_idle_catch_up):
    batch = [record(n) for n in range(120)]
    assert client.post("/api/v1/runs/batch", json=batch).get_json()["inserted"] == 120
    for n in range(120, 140):  # single POSTs: on SQLite, above the insert watermark until a read catches up
        assert client.post("/api/v1/runs", json=record(n)).status_code == 201
    assert_counts_match_rows(client)

    # Runs that changed status later, and runs deleted.
    for n in range(0, 140, 9):
        assert client.patch(f"/api/v1/runs/evt-{n:04d}", json={"status": "failure"}).status_code == 200
    client.post("/api/v1/runs/mark-failed", json={"event_ids": [f"evt-{n:04d}" for n in range(5, 140, 6)]})
    for n in range(3, 140, 11):
        assert client.delete(f"/api/v1/runs/evt-{n:04d}").status_code in (200, 204)
    # Retention: the runs created more than 20 days ago go.
    assert apply_retention(db, 20)["runs_deleted"] > 0
    assert_counts_match_rows(client)


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL's direct writes are followed by `rollups rebuild`
def test_counts_follow_another_tools_writes_to_the_sqlite_file(client, settings, backend):
    assert client.post("/api/v1/runs/batch", json=[record(n) for n in range(60)]).get_json()["inserted"] == 60
    page_counts(client, {"job_type": "crawl"})  # counted
    with sqlite3.connect(settings.db_path) as raw:
        raw.execute("UPDATE agent_runs SET job_type = 'index', host = 'h9' WHERE id % 4 = 0")
        raw.execute("UPDATE agent_runs SET environment = NULL WHERE id % 5 = 0")
        raw.execute("DELETE FROM agent_runs WHERE id % 7 = 0")
    assert_counts_match_rows(client)
    assert sum(page_counts(client, {"host": "h9"}).values()) == 15 - 2  # ids 4, 8 ... 60, less 28 and 56
