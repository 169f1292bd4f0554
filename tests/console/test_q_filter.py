"""search.q_filter: the `q` filter of GET /api/v1/runs, riding FTS5 / pg_trgm."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from console import search
from console.models import agent_runs
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


def test_short_terms_and_wildcards_are_plain_text(seeded):
    assert matches(seeded, "-4") == ["0a1b9999-bbbb"]
    assert matches(seeded, "100%") == ["0a1b9999-bbbb"]
    assert matches(seeded, "%") == ["0a1b9999-bbbb"]
    assert matches(seeded, "_") == []


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
