"""Check that the rollups equal a recomputation from agent_runs."""

from __future__ import annotations

from console import rollups


def assert_rollups_match(db) -> None:
    with db.read() as session:
        expected = rollups.recompute_from_runs(session)
        stored = rollups.stored_rollups(session)
    assert stored["groups"] == {k: list(v) for k, v in expected["groups"].items()}
    assert stored["buckets"] == expected["buckets"]
