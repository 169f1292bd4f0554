"""Hostile values in the pages' forms: NUL in any field is never a 5xx and changes nothing."""

from __future__ import annotations

import pytest

from tests.security.conftest import dump_store

CSRF = "test-csrf-token"
NUL = "a\x00b"


@pytest.fixture
def form_client(client):
    with client.session_transaction() as session:
        session["csrf"] = CSRF
    return client


def form_posts(running: str) -> list[tuple[str, dict]]:
    return [
        (f"/runs/{running}/status", {"status": "failure", "reason": NUL}),
        (f"/runs/{running}/status", {"status": "cancelled", "reason": NUL}),
        (f"/runs/{running}/status", {"status": NUL}),
        (f"/runs/{running}/commit", {"commit_hash": "abcdef1", "commit_source": "llm", "commit_author": NUL}),
        (f"/runs/{running}/commit", {"commit_hash": NUL, "commit_source": "llm"}),
        (f"/runs/{running}/export/retry", {"destination": NUL}),
        (f"/runs/{running}/delete", {"confirm": NUL}),
        ("/stale/mark-failed", {"event_id": [running, NUL], "reason": NUL, "confirm": "yes"}),
        ("/stale/mark-failed", {"event_id": NUL}),
        ("/stale/mark-failed?older_than_minutes=%00", {"all": "1"}),
        ("/jobs/backup/run", {"next": NUL}),
    ]


def test_nul_in_any_form_field_is_a_400_that_says_so_and_changes_nothing(form_client, db, seeded):
    before = dump_store(db)
    for path, form in form_posts(seeded[0]):
        resp = form_client.post(path, data={**form, "csrf_token": CSRF})
        assert resp.status_code == 400, (path, form, resp.status_code, resp.get_data(as_text=True)[:300])
        assert "NUL" in resp.get_data(as_text=True)
    resp = form_client.post("/runs/x/status", data={"status": "failure", "csrf_token": CSRF, "k\x00": "v"})
    assert resp.status_code == 400  # in a field's name too
    assert dump_store(db) == before
