"""`python -m console rollups rebuild|reconcile|check`."""

from __future__ import annotations

from console.cli.registry import arg, command
from console.core.progress import terminal_progress
from console.store import watermark
from console.store.db import Database, make_plain_engine
from console.store.reconcile import rebuild, recompute_from_runs, reconcile_dirty, stored_rollups


@command(
    "rollups",
    "Rebuild the run rollups from agent_runs, reconcile dirty hours, or check them.",
    arg("action", choices=["rebuild", "reconcile", "check"]),
)
def rollups_command(settings, options) -> int:
    """`python -m console rollups rebuild|reconcile|check`."""
    db = Database(settings, make_plain_engine(settings))
    try:
        if options.action == "rebuild":
            progress = terminal_progress()
            groups = db.write(lambda session: rebuild(session, progress))
            print(f"rollups rebuilt: {groups} (agent, status, hour) groups")
        elif options.action == "reconcile":
            hours = db.write(lambda session: reconcile_dirty(session, limit=1_000_000))
            print(f"rollups reconciled: {hours} hour(s) recomputed")
        else:
            if db.dialect == "sqlite":
                db.write(watermark.catch_up)  # runs not counted yet are counted first, as for any read
            with db.read() as session:
                expected, stored = recompute_from_runs(session), stored_rollups(session)
            if expected == stored:
                print("rollups match agent_runs")
                return 0
            print("rollups differ from agent_runs; run `python -m console rollups rebuild`")
            return 1
    finally:
        db.dispose()
    return 0
