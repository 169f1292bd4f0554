"""The runs page's host and environment filters, and its CSV / JSON downloads."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
import requests

from console.app import create_app
from console.core.settings import load_settings
from console.core.timeutil import utcnow
from console.domain.runs import RunFilters
from console.web import downloads
from console.web import queries as web_queries
from tests.jobs.conftest import insert_runs, run_row
from tests.web.conftest import HTMX, hours_ago

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


def text(response) -> str:
    return response.get_data(as_text=True)


def rows_of_csv(body: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body)))


@pytest.fixture
def fleet(make_run):
    make_run(run_id="web-prod", host="web-1", environment="prod", start_time=hours_ago(3))
    make_run(run_id="web-dev", host="web-1", environment="dev", start_time=hours_ago(2))
    make_run(run_id="db-prod", host="db-1", environment="prod", start_time=hours_ago(1), status="failure",
             error_summary="=HYPERLINK(\"http://evil\")")


def test_host_and_environment_filter_the_rows_and_stay_in_the_form(client, fleet):
    body = text(client.get("/?host=web-1"))
    assert "web-prod" in body and "web-dev" in body and "db-prod" not in body
    assert '<option value="web-1" selected>' in body and '<option value="db-1">' in body
    body = text(client.get("/?environment=prod"))
    assert "web-prod" in body and "db-prod" in body and "web-dev" not in body
    body = text(client.get("/?host=web-1&environment=prod", headers=HTMX))
    assert "web-prod" in body and "web-dev" not in body and "db-prod" not in body
    # The rollups cannot count by host: the counts come from the deferred partial, and are right.
    assert "/runs/counts?host=web-1" in body
    counts = text(client.get("/runs/counts?host=web-1&environment=prod"))
    assert "</span> success <strong>1</strong>" in counts and "</span> failure <strong>0</strong>" in counts
    # A value no run has stays selected rather than silently dropped.
    assert '<option value="nowhere" selected>' in text(client.get("/?host=nowhere"))


def test_the_download_links_carry_the_current_filter(client, fleet):
    body = text(client.get("/?environment=prod&status=failure"))
    assert '/runs/download.csv?status=failure&amp;environment=prod"' in body
    assert '/runs/download.json?status=failure&amp;environment=prod"' in body


def test_csv_download_has_the_filtered_runs_newest_first_with_formulas_defused(client, fleet):
    response = client.get("/runs/download.csv?environment=prod")
    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="runs-')
    assert response.headers["X-Telemetry-Max-Rows"] == str(downloads.MAX_ROWS)
    rows = rows_of_csv(text(response))
    assert [r["run_id"] for r in rows] == ["db-prod", "web-prod"]
    assert list(rows[0]) == downloads.COLUMNS
    assert rows[0]["error_summary"] == "'=HYPERLINK(\"http://evil\")"
    assert rows[0]["host"] == "db-1" and rows[1]["api_posted"] == "False"


def test_json_download_is_the_api_records_of_the_filtered_runs(client, fleet):
    response = client.get("/runs/download.json?host=web-1")
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    records = json.loads(text(response))
    assert [r["run_id"] for r in records] == ["web-dev", "web-prod"]
    api = client.get("/api/v1/runs?host=web-1").get_json()
    assert records == api


def test_an_empty_download_is_a_header_or_an_empty_array(client):
    assert text(client.get("/runs/download.csv")).strip() == ",".join(downloads.COLUMNS)
    assert json.loads(text(client.get("/runs/download.json"))) == []


@pytest.mark.parametrize("query", ["status=bogus", "range=3y"])
def test_a_bad_filter_is_a_400_with_a_detail(client, fleet, query):
    response = client.get(f"/runs/download.csv?{query}")
    assert response.status_code == 400 and response.get_json()["detail"]


def test_an_unknown_format_is_a_404_with_a_detail(client):
    response = client.get("/runs/download.xlsx")
    assert response.status_code == 404 and "csv" in response.get_json()["detail"]


def test_a_download_stops_at_the_documented_maximum(client, db, monkeypatch):
    now = utcnow()
    insert_runs(db, [run_row(run_id=f"r{i:02d}", created_at=now - timedelta(minutes=i)) for i in range(12)])
    monkeypatch.setattr(downloads, "MAX_ROWS", 7)
    rows = rows_of_csv(text(client.get("/runs/download.csv")))
    assert [r["run_id"] for r in rows] == [f"r{i:02d}" for i in range(7)]


def test_pages_are_read_lazily_in_bounded_pages(db):
    now = utcnow()
    insert_runs(db, [run_row(run_id=f"p{i:02d}", created_at=now - timedelta(minutes=i)) for i in range(10)])
    pages = web_queries.run_pages(db, RunFilters(), max_rows=8, page_size=3)
    first = next(pages)  # a generator: nothing past the first page is read yet
    assert [r["run_id"] for r in first] == ["p00", "p01", "p02"]
    rest = list(pages)
    assert [len(p) for p in rest] == [3, 2]
    assert [r["run_id"] for p in rest for r in p] == [f"p{i:02d}" for i in range(3, 8)]


def test_a_real_server_streams_a_large_download_in_chunks(console_server, db):
    now = utcnow()
    insert_runs(db, [run_row(run_id=f"big-{i:04d}", host="h", created_at=now - timedelta(seconds=i))
                     for i in range(1500)])
    with requests.get(console_server.url + "/runs/download.csv?host=h", stream=True, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers.get("Transfer-Encoding") == "chunked"
        body = b"".join(response.iter_content(65536)).decode()
    rows = rows_of_csv(body)
    assert len(rows) == 1500 and rows[0]["run_id"] == "big-0000" and rows[-1]["run_id"] == "big-1499"


def test_a_download_needs_the_page_login_when_auth_is_on(env, db, fleet):
    settings = load_settings({**env, "TELEMETRY_API_AUTH_ENABLED": "true", "TELEMETRY_API_AUTH_TOKEN": "t0ken-value"})
    app = create_app(settings, {"TESTING": True})
    try:
        for path in ("/runs/download.csv", "/runs/download.json?host=web-1"):
            response = app.test_client().get(path)
            assert response.status_code == 303 and response.headers["Location"].startswith("/login?next=")
            assert "web-prod" not in text(response)
    finally:
        app.extensions["telemetry_db"].dispose()
