"""GET /api/v1/runs: filters, order, offset and cursor paging, errors."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.console.conftest import post_run, run_body


def ids(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [record["run_id"] for record in response.get_json()]


@pytest.fixture
def three_runs(client):
    """r1 (oldest) .. r3 (newest) with distinct agents, statuses and times."""
    post_run(client, run_id="r1", agent_name="alpha", job_type="crawl", status="success",
             created_at="2026-01-10T00:00:00Z", start_time="2026-01-10T00:00:00Z", environment="prod", host="h1",
             parent_run_id="p1", error_summary="Timeout talking to API")
    post_run(client, run_id="r2", agent_name="beta", job_type="crawl", status="failed",
             created_at="2026-01-11T00:00:00Z", start_time="2026-01-11T00:00:00Z", environment="dev", host="h2")
    post_run(client, run_id="r3", agent_name="alpha", job_type="index", status="running",
             created_at="2026-01-12T00:00:00Z", start_time="2026-01-12T00:00:00Z", environment="prod", host="h1",
             parent_run_id="p1")


def test_newest_created_first_as_a_bare_array(client, three_runs):
    assert ids(client.get("/api/v1/runs")) == ["r3", "r2", "r1"]


@pytest.mark.parametrize(("query", "expected"), [
    ("agent_name=alpha", ["r3", "r1"]),
    ("job_type=crawl", ["r2", "r1"]),
    ("status=failure", ["r2"]),
    ("status=failed", ["r2"]),
    ("status=completed", ["r1"]),
    ("agent_name=alpha&status=running", ["r3"]),
    ("created_before=2026-01-11T00:00:00Z", ["r1"]),
    ("created_after=2026-01-11T00:00:00Z", ["r3"]),
    ("created_after=2026-01-10&created_before=2026-01-12", ["r2"]),
    ("created_after=2026-01-10T00:00:00", ["r3", "r2"]),
    ("start_time_from=2026-01-11T00:00:00Z", ["r3", "r2"]),
    ("start_time_to=2026-01-11T00:00:00Z", ["r2", "r1"]),
    ("start_time_from=2026-01-11T01:00:00%2B01:00&start_time_to=2026-01-11", ["r2"]),
    ("parent_run_id=p1", ["r3", "r1"]),
    ("environment=dev", ["r2"]),
    ("host=h1", ["r3", "r1"]),
    ("q=timeout", ["r1"]),
    ("q=OUT%20TALK", ["r1"]),
    ("q=%25%25%25", []),
    ("agent_name=nobody", []),
])
def test_filters(client, three_runs, query, expected):
    assert ids(client.get(f"/api/v1/runs?{query}")) == expected


def test_q_matches_a_prefix_of_event_id(client, three_runs):
    # console/store/search.py: event_id is matched by prefix (its unique index), not inside.
    body = post_run(client, run_id="r4")
    assert ids(client.get(f"/api/v1/runs?q={body['event_id'][:13]}")) == ["r4"]


@pytest.mark.parametrize("query", ["status=exploded", "created_before=garbage", "created_after=2026-13-01",
                                   "start_time_from=yesterday", "created_after=0999-01-01", "start_time_to=2026-01-01Tnope", "cursor=%%%"])
def test_bad_status_time_or_cursor_is_400(client, query):
    response = client.get(f"/api/v1/runs?{query}")
    assert response.status_code == 400
    assert isinstance(response.get_json()["detail"], str)


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "offset=-1", "offset=x"])
def test_bad_limit_or_offset_is_422(client, query):
    response = client.get(f"/api/v1/runs?{query}")
    assert response.status_code == 422
    assert response.get_json()["detail"][0]["loc"][0] == "query"


def test_limit_and_offset_page_through(client, three_runs):
    assert ids(client.get("/api/v1/runs?limit=2")) == ["r3", "r2"]
    assert ids(client.get("/api/v1/runs?limit=2&offset=2")) == ["r1"]
    assert ids(client.get("/api/v1/runs?limit=1000&offset=5")) == []


def test_cursor_pages_follow_the_link_header_to_the_end(client):
    for n in range(7):
        post_run(client, run_id=f"c{n}", created_at="2026-01-12T00:00:00Z")  # equal times: id order breaks ties
    seen = []
    url = "/api/v1/runs?limit=3&agent_name=agent-a"
    while url:
        response = client.get(url)
        seen += ids(response)
        link = response.headers.get("Link")
        if not link:
            break
        target, rel = link.split(";")
        assert rel.strip() == 'rel="next"'
        absolute = target.strip()[1:-1]
        assert absolute.startswith("http://localhost/api/v1/runs?")
        query = parse_qs(urlsplit(absolute).query)
        assert query["agent_name"] == ["agent-a"] and query["limit"] == ["3"]
        url = absolute.replace("http://localhost", "")
    assert seen == [f"c{n}" for n in range(7)]


def test_no_link_header_on_the_last_page(client, three_runs):
    assert "Link" not in client.get("/api/v1/runs?limit=3").headers
    assert "Link" in client.get("/api/v1/runs?limit=2").headers


def test_one_run_and_404(client, three_runs):
    record = client.get("/api/v1/runs?limit=1").get_json()[0]
    assert client.get(f"/api/v1/runs/{record['event_id']}").get_json() == record
    missing = client.get("/api/v1/runs/no-such-event")
    assert missing.status_code == 404 and missing.get_json()["detail"]


def _plans(client, db, path: str) -> list[list[str]]:
    """The SQLite query plan of every read of agent_runs that GET `path` made."""
    from sqlalchemy import event

    seen = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")) and "FROM agent_runs" in statement:
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert seen
    with db.read() as session:
        return [[row[-1] for row in session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
                for statement, parameters in seen]


@pytest.mark.parametrize("backend", ["sqlite"])  # the plan is SQLite's; PostgreSQL's planner weighs table sizes
@pytest.mark.parametrize("query", [
    "", "agent_name=alpha", "status=success", "job_type=crawl", "parent_run_id=p1", "environment=prod", "host=h1",
    "created_after=2026-01-10T00:00:00Z", "start_time_from=2026-01-10T00:00:00Z&start_time_to=2026-01-11T00:00:00Z",
    "agent_name=alpha&status=running", "q=Timeout talking", "q=r1x",
])
def test_every_list_filter_rides_an_index(client, db, three_runs, backend, query):
    for steps in _plans(client, db, f"/api/v1/runs?{query}"):
        if query:  # a filter is an index search, not a walk of the table or of an index in created order
            assert not any(step.startswith("SCAN agent_runs") for step in steps), steps
            assert any(step.startswith("SEARCH agent_runs USING") for step in steps), steps
        else:
            assert any(step.startswith("SCAN agent_runs USING INDEX") for step in steps), steps
        if "q=" not in query and "start_time" not in query and "parent_run_id" not in query:
            # Read in the index's order, ties included: no sort of each group of equal
            # created_at (a whole batch shares one), which the head of a list would pay.
            assert not any("TEMP B-TREE" in step for step in steps), steps


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("path", [
    "/", "/?environment=prod", "/api/v1/metadata/agent_name", "/api/v1/metadata/environment",
    "/api/v1/metadata/host", "/api/v1/metadata/git_commit_hash", "/api/v1/metadata/website",
    "/api/v1/metadata/parent_run_id", "/api/v1/metadata/job_type", "/api/v1/metadata/status",
])
def test_the_runs_page_and_indexed_metadata_never_read_the_whole_table(client, db, three_runs, backend, path):
    # A step on agent_runs without an index is a walk of every row: at 10,000,000 runs, seconds
    # (`SELECT MIN(environment)` cannot use the partial index of set values unless it says IS NOT NULL).
    for steps in _plans(client, db, path):
        touching = [step for step in steps if "agent_runs" in step]
        assert all(" USING " in step for step in touching), steps


def test_latest_run_per_agent_is_the_newest_by_created_at_then_id(client, db):
    from console.domain.runs import latest_run_per_agent

    bodies = [
        run_body(event_id="a-old", agent_name="a", created_at="2026-01-12T10:00:00Z"),
        run_body(event_id="a-tie-1", agent_name="a", created_at="2026-01-12T11:00:00Z"),
        run_body(event_id="a-tie-2", agent_name="a", created_at="2026-01-12T11:00:00Z"),
        run_body(event_id="a-older-later", agent_name="a", created_at="2026-01-11T00:00:00Z"),
        run_body(event_id="b-only", agent_name="b", created_at="2026-01-01T00:00:00Z"),
    ]
    assert client.post("/api/v1/runs/batch", json=bodies).json["inserted"] == 5
    with db.read() as session:
        latest = latest_run_per_agent(session)
        named = latest_run_per_agent(session, ["b", "a", "no-such-agent"])
        assert latest_run_per_agent(session, []) == {}
    assert {name: row["event_id"] for name, row in latest.items()} == {"a": "a-tie-2", "b": "b-only"}
    assert {name: row["event_id"] for name, row in named.items()} == {"a": "a-tie-2", "b": "b-only"}


def _fill_skewed(db) -> None:
    """60,000 runs; the newest 20,000 are another agent's, of another job type, with no
    environment: a filter's matches are not spread evenly over time."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO agent_runs (event_id, run_id, created_at, start_time, agent_name, job_type, status, "
            "environment, host) SELECT 'e' || g, 'r' || g, timestamptz '2026-01-01' + g * interval '1 minute', "
            "timestamptz '2026-01-01' + g * interval '1 minute', "
            "CASE WHEN g > 40000 THEN 'newcomer' ELSE 'agent-' || mod(g, 2) END, "
            "CASE WHEN g > 40000 THEN 'other' ELSE 'crawl' END, CASE WHEN mod(g, 3) = 0 THEN 'failure' ELSE 'success' END, "
            "CASE WHEN g > 40000 THEN NULL ELSE 'prod' END, 'h' FROM generate_series(1, 60000) g"
        )
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE agent_runs")


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize("query", [
    "agent_name=agent-1", "agent_name=agent-1&status=failure", "status=failure", "job_type=crawl", "environment=prod",
])
def test_a_filtered_list_reads_its_index_even_when_the_newest_runs_do_not_match(client, db, backend, query):
    from sqlalchemy import event

    _fill_skewed(db)
    seen = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FROM agent_runs" in statement:
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        response = client.get(f"/api/v1/runs?{query}&limit=50")
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    runs = response.json
    assert len(runs) == 50 and [r["created_at"] for r in runs] == sorted((r["created_at"] for r in runs), reverse=True)
    for name, value in (part.split("=") for part in query.split("&")):
        assert {r[name] for r in runs} == {value}
    assert runs[0]["run_id"] == "r40000" or "status" in query or "agent_name" in query
    with db.read() as session:
        plans = [str(session.connection().exec_driver_sql("EXPLAIN " + statement, parameters).all())
                 for statement, parameters in seen]
    # Walking idx_runs_created_desc would pass the 20,000 newest runs, none of them matching.
    assert plans and all("idx_runs_created_desc" not in plan and "Index Only Scan" in plan for plan in plans), plans


@pytest.mark.parametrize("early", [False, True], ids=["ids-follow-time", "first-stored-is-newest"])
@pytest.mark.parametrize("scanned", [3, 40, 10_000])
def test_q_pages_are_the_same_whether_the_newest_runs_hold_them_or_the_index_does(client, monkeypatch, scanned,
                                                                                 early):
    """`q` alone is first looked for among the newest runs: on PostgreSQL the newest
    NEWEST_SCANNED; on SQLite, for a common term, the search index read newest id first in
    chunks (the first of `scanned` runs), checked against the created_at index. A page found
    that way, or not, and every cursor page after it, equals the whole ordered list of
    matches, also when runs arrive with created_at older than runs stored before them."""
    from console.domain import runs
    from console.store import search

    monkeypatch.setattr(runs, "NEWEST_SCANNED", scanned)
    monkeypatch.setattr(search, "COMMON_MATCHES", 1)
    monkeypatch.setattr(search, "STREAM_FIRST", scanned)
    first = [run_body(run_id="early-0", error_summary="quota", created_at="2026-01-12T12:00:00Z")] if early else []
    if first:  # stored first, sorted first: the search index names it last
        assert client.post("/api/v1/runs/batch", json=first).get_json()["inserted"] == 1
    bodies = []
    for n in range(60):  # "quota" in the newest 30 runs' errors and in every 7th older one
        error = "disk quota exceeded" if n >= 30 or n % 7 == 0 else "connection reset"
        bodies.append(run_body(run_id=f"q-{n:02d}", status="failure", error_summary=error,
                               created_at=f"2026-01-12T10:{n:02d}:00Z"))
    bodies.append(run_body(run_id="tie-a", created_at="2026-01-12T10:45:00Z", error_summary="quota"))
    assert client.post("/api/v1/runs/batch", json=bodies).get_json()["inserted"] == 61
    late = [run_body(run_id=f"late-{n}", error_summary="quota", created_at=f"2026-01-12T{hour}:30:30Z")
            for n, hour in enumerate(("09", "10", "10", "11"))]  # stored last, sorted among the others
    assert client.post("/api/v1/runs/batch", json=late).get_json()["inserted"] == 4
    bodies += late + first
    for q in ("quota", "reset", "q-0"):
        expected = [b["run_id"] for b in sorted(bodies, key=lambda b: b["created_at"], reverse=True)
                    if q.lower() in (b["run_id"] + " " + (b.get("error_summary") or "")).lower()]
        seen, url = [], f"/api/v1/runs?q={q}&limit=4"
        while url:
            response = client.get(url)
            seen += ids(response)
            nxt = response.headers.get("Link", "")
            url = nxt[nxt.index("/api/"):nxt.index(">")] if nxt else None
        assert seen == expected, q  # ties (tie-a, q-45) in the order they arrived
        assert ids(client.get(f"/api/v1/runs?q={q}&limit=5&offset=2")) == seen[2:7], q
