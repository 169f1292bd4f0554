"""search.q_filter: the `q` filter of GET /api/v1/runs, riding FTS5 / pg_trgm."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from console.store import search
from console.store.models import agent_runs
from tests.console.test_ingest import line

RUNS = [
    ("0a1b2c3d-aaaa", "nightly-crawl-17", "Connection reset by peer"),
    ("0a1b9999-bbbb", "hourly-sync-4", "disk quota 100% exceeded"),
    ("ffee0000-cccc", "nightly-report-2", None),
]


@pytest.fixture
def seeded(client, db):
    lines = [
        line(
            "run_ended",
            "2026-01-12T10:00:00Z",
            {"status": "failure", "error_summary": error},
            event_id=event_id,
            run_id=run_id,
        )
        if error
        else line("run_started", "2026-01-12T10:00:00Z", event_id=event_id, run_id=run_id)
        for event_id, run_id, error in RUNS
    ]
    assert client.post("/api/v1/ingest", json=lines).json["accepted"] == 3
    return db


def matches(db, q: str, *, with_session: bool = True) -> list[str]:
    with db.read() as session:
        clause = search.q_filter(db.dialect, q, session=session if with_session else None)
        return sorted(session.execute(select(agent_runs.c.event_id).where(clause)).scalars())


@pytest.mark.parametrize("with_session", [True, False])
def test_substrings_of_run_id_and_error_summary_match(seeded, with_session):
    assert matches(seeded, "nightly", with_session=with_session) == ["0a1b2c3d-aaaa", "ffee0000-cccc"]
    assert matches(seeded, "crawl-1", with_session=with_session) == ["0a1b2c3d-aaaa"]
    assert matches(seeded, "RESET BY", with_session=with_session) == ["0a1b2c3d-aaaa"]
    assert matches(seeded, "nothing like it", with_session=with_session) == []


def test_event_id_matches_by_prefix(seeded):
    assert matches(seeded, "0a1b") == ["0a1b2c3d-aaaa", "0a1b9999-bbbb"]
    assert matches(seeded, "0a1b2c3d-aaaa") == ["0a1b2c3d-aaaa"]


def test_wildcards_are_plain_text_and_terms_under_three_characters_are_refused(seeded, client):
    assert matches(seeded, "100%") == ["0a1b9999-bbbb"]
    assert matches(seeded, "9-b%") == []
    for short in ("-4", "%", "_"):  # the trigram index cannot answer them without reading every run
        answer = client.get("/api/v1/runs", query_string={"q": short})
        assert answer.status_code == 422 and "at least 3 characters" in str(answer.get_json()["detail"])


def test_a_common_term_is_answered_by_a_scan_with_the_same_result(seeded, monkeypatch):
    expected = matches(seeded, "nightly", with_session=False)
    monkeypatch.setattr(search, "COMMON_MATCHES", 1)
    assert matches(seeded, "nightly") == expected


def test_the_index_follows_updates_and_deletes(seeded, client):
    client.post("/api/v1/runs/mark-failed", json={"event_ids": ["ffee0000-cccc"], "reason": "zombie"})
    assert matches(seeded, "zombie") == ["ffee0000-cccc"]
    client.delete("/api/v1/runs/0a1b2c3d-aaaa")
    assert matches(seeded, "nightly") == ["ffee0000-cccc"]


def test_quotes_and_wildcards_in_a_long_term_are_literal(client, db):
    lines = [line("run_ended", "2026-01-12T10:00:00Z", {"status": "failure", "error_summary": error},
                  event_id=f"e{i}", run_id=f"r{i}") for i, error in enumerate(['said "hello" twice', "50% done",
                                                                                  "a_b c"])]
    client.post("/api/v1/ingest", json=lines)
    assert matches(db, '"hello"') == ["e0"]
    assert matches(db, "50% d") == ["e1"]
    assert matches(db, "a_b") == ["e2"]
    assert matches(db, "a%b") == []


def _write_directly(settings, sql: str, *params) -> None:
    import sqlite3

    conn = sqlite3.connect(settings.db_path)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def _indexed(db, q: str) -> list[int]:
    with db.read() as session:
        return search.indexed_candidates(session, q)


def _search_index_is_consistent(db) -> None:
    with db.read() as session:
        session.connection().exec_driver_sql(
            "INSERT INTO runs_search (runs_search, rank) VALUES ('integrity-check', 1)")


@pytest.mark.parametrize("backend", ["sqlite"])  # other tools write the SQLite file directly
def test_rows_another_tool_inserts_are_found_before_and_after_they_are_indexed(seeded, client, settings, backend):
    _write_directly(
        settings,
        "INSERT INTO agent_runs (event_id, run_id, agent_name, job_type, start_time, status, error_summary) "
        "VALUES ('ext-1', 'outside-job-9', 'tool', 'j', '2026-01-12T15:30:00.000000+00:00', 'failure', 'kaput')",
    )
    # Not indexed yet: the scan above the insert watermark finds it.
    assert _indexed(seeded, "outside-job") == []
    assert matches(seeded, "outside-job") == ["ext-1"]
    assert matches(seeded, "KAPUT") == ["ext-1"]
    # The console's next write indexes it with its own rows.
    client.post("/api/v1/ingest", json=[line("run_started", "2026-01-12T16:00:00Z", event_id="own-1",
                                             run_id="outside-job-10")])
    assert len(_indexed(seeded, "outside-job")) == 2
    assert matches(seeded, "outside-job") == ["ext-1", "own-1"]
    _search_index_is_consistent(seeded)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_another_tools_update_and_delete_of_unindexed_rows_keep_the_index_whole(seeded, client, settings, backend):
    for i in range(3):
        _write_directly(
            settings,
            "INSERT INTO agent_runs (event_id, run_id, agent_name, job_type, start_time) "
            "VALUES (?, ?, 'tool', 'j', '2026-01-12T15:30:00.000000+00:00')",
            f"ext-{i}", f"outside-{i}",
        )
    _write_directly(settings, "UPDATE agent_runs SET run_id = 'renamed-0' WHERE event_id = 'ext-0'")
    _write_directly(settings, "DELETE FROM agent_runs WHERE event_id = 'ext-1'")
    client.get("/api/v1/stats")  # reading stats reconciles: the new rows are indexed
    _write_directly(settings, "UPDATE agent_runs SET run_id = 'renamed-2' WHERE event_id = 'ext-2'")
    _search_index_is_consistent(seeded)
    assert matches(seeded, "renamed") == ["ext-0", "ext-2"]
    assert _indexed(seeded, "renamed") != []
    assert matches(seeded, "outside") == []


def test_a_run_holding_every_trigram_of_the_term_but_not_the_term_does_not_match(client, db):
    # The index keeps which runs hold a trigram, not where: "abcd" has abc and bcd, so has "abcXbcd".
    lines = [line("run_ended", "2026-01-12T10:00:00Z", {"status": "failure", "error_summary": error},
                  event_id=f"t{i}", run_id=run_id)
             for i, (run_id, error) in enumerate([("abcXbcd", "said twice"), ("xxABCDyy", "said it twice")])]
    client.post("/api/v1/ingest", json=lines)
    assert matches(db, "abcd") == ["t1"]
    assert matches(db, "said%twice") == []
    assert matches(db, "said_it") == []
    assert matches(db, "d it t") == ["t1"]


def test_a_long_term_asks_the_index_for_a_few_of_its_trigrams_and_still_matches_exactly(client, db):
    long_id = "x" * 10 + "-".join(f"{n:04d}" for n in range(200))
    lines = [line("run_started", "2026-01-12T10:00:00Z", event_id=f"l{i}", run_id=run_id)
             for i, run_id in enumerate([long_id, long_id[:-1] + "Z"])]
    client.post("/api/v1/ingest", json=lines)
    assert search.trigram_terms(long_id).count(" AND ") == search.MAX_TRIGRAMS - 1
    assert matches(db, long_id) == ["l0"]
    assert matches(db, long_id[5:900]) == ["l0", "l1"]
