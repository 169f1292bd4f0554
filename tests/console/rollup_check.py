"""Check that the rollups equal a recomputation from agent_runs."""

from __future__ import annotations

from console import reconcile, rollups


def assert_rollups_match(db) -> None:
    with db.read() as session:
        expected = reconcile.recompute_from_runs(session)
        stored = reconcile.stored_rollups(session)
    for table in rollups.TABLES:
        assert stored[table] == expected[table], table
