"""Check that the rollups equal a recomputation from agent_runs."""

from __future__ import annotations

from console import rollups


def assert_rollups_match(db) -> None:
    with db.read() as session:
        expected = rollups.recompute_from_runs(session)
        stored = rollups.stored_rollups(session)
    for table in rollups.TABLES:
        assert stored[table] == expected[table], table
