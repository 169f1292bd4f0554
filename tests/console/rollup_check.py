"""Check that the rollups equal a recomputation from agent_runs."""

from __future__ import annotations

from console.store import reconcile, rollup_tables, watermark


def assert_rollups_match(db) -> None:
    """Our writes, once the watermark has caught up (as every read of the rollups does
    first), leave the rollups equal to a recomputation; dirty hours are not reconciled."""
    if db.dialect == "sqlite":
        db.write(watermark.catch_up)
    with db.read() as session:
        expected = reconcile.recompute_from_runs(session)
        stored = reconcile.stored_rollups(session)
    for table in rollup_tables.TABLES:
        assert stored[table] == expected[table], table
