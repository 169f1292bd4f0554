"""The search index merges off the request path: writes leave merging to the job, and
`q` finds every run before and after it merges."""

from __future__ import annotations

import pytest

from console.store.reconcile import scheduled_reconcile
from console.store.search_merge import merge_search_index
from tests.console.conftest import run_body


def _post_batches(client, count: int) -> list[str]:
    run_ids = []
    for n in range(count):
        records = [run_body(run_id=f"merge-{n}-{i}-x9q", error_summary=f"boom {n}") for i in range(3)]
        response = client.post("/api/v1/runs/batch", json=records)
        assert response.status_code == 201, response.get_json()
        run_ids += [record["run_id"] for record in records]
    return run_ids


def _found(client, term: str) -> set[str]:
    response = client.get("/api/v1/runs", query_string={"q": term, "limit": 1000})
    assert response.status_code == 200, response.get_json()
    return {record["run_id"] for record in response.get_json()}


def _segments(db) -> int:
    # FTS5 keeps each segment's pages under rowids (segment id << 37 | ...) of its %_data table.
    with db.read() as session:
        return session.connection().exec_driver_sql(
            "SELECT count(DISTINCT id >> 37) FROM runs_search_data WHERE id >= (1 << 37)").scalar_one()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_writes_are_set_never_to_merge(db, backend):
    # FTS5 merges inside a write unless `automerge` is 0 (at small sizes the merge work
    # per write is too small to see in the segments, so the setting itself is checked).
    with db.read() as session:
        settings = dict(session.connection().exec_driver_sql("SELECT k, v FROM runs_search_config").all())
    assert (settings["automerge"], settings["crisismerge"]) == (0, 64)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_writes_leave_merging_to_the_job_and_q_finds_every_run_throughout(client, db, backend):
    run_ids = _post_batches(client, 12)
    assert _segments(db) >= 12  # a segment per transaction
    assert _found(client, "-x9q") == set(run_ids)
    assert _found(client, "merge-7-") == {r for r in run_ids if r.startswith("merge-7-")}

    assert merge_search_index(db) > 0
    assert merge_search_index(db) == 0  # nothing left
    assert _segments(db) < 4
    assert _found(client, "-x9q") == set(run_ids)
    assert _found(client, "boom 11") == {r for r in run_ids if r.startswith("merge-11-")}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_scheduled_reconcile_merges_and_says_how_many_steps(client, db, settings, backend):
    _post_batches(client, 8)
    report = scheduled_reconcile(db, settings)
    assert report["search_merge_steps"] > 0
    assert scheduled_reconcile(db, settings)["search_merge_steps"] == 0


@pytest.mark.parametrize("backend", ["postgresql"])
def test_postgresql_has_nothing_to_merge(client, db, backend):
    _post_batches(client, 2)
    assert merge_search_index(db) == 0
