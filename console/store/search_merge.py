"""The search index's merges, done off the request path (SQLite).

FTS5 keeps its index as segments and, by default, merges them as it writes
(`automerge`): each transaction that indexes new runs also does a share of the
merging. At 10,000,000 runs that share cost 0.2–0.8 s per 500-run transaction,
against 4–12 ms at 100,000 (scripts/bench/bench_operations.py). Migration 0017
turns it off (`automerge=0`), so a write only adds its own small segment, and
`merge_search_index` does the merging in short transactions of its own, from the
scheduled `rollup_reconcile` job and `python -m console rollups reconcile`.

Merging changes no answer: a run is in the index from the transaction that
indexed it, whichever segment holds it. If nothing merges (the scheduler off),
`crisismerge` bounds a level at CRISIS_SEGMENTS segments: the write that would
add one more merges that level itself.
"""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from console.store.db import Database, driver_cursor

CRISIS_SEGMENTS = 64
# Pages of merged output per transaction: a few milliseconds of write lock each.
# A level is merged once it holds 4 segments (FTS5's `usermerge` default).
MERGE_PAGES = 64


def merge_step(session: Session, pages: int = MERGE_PAGES) -> bool:
    """Merge about `pages` pages of the index's segments (in the caller's write
    transaction); False when no level had enough segments to merge."""
    execute = driver_cursor(session).execute
    (before,) = execute("SELECT total_changes()").fetchone()
    execute("INSERT INTO runs_search (runs_search, rank) VALUES ('merge', ?)", (pages,))
    (after,) = execute("SELECT total_changes()").fetchone()
    # SQLite's documented test: a difference of 2 or more means work was done.
    return after - before >= 2


def merge_search_index(db: Database, *, seconds: float = 20.0, pause: float = 0.02) -> int:
    """Merge in steps, each its own write transaction, until there is nothing to merge
    or `seconds` have passed (the next call goes on); returns the steps that merged."""
    if db.dialect != "sqlite":
        return 0
    deadline = time.monotonic() + seconds
    steps = 0
    while time.monotonic() < deadline and db.write(merge_step):
        steps += 1
        time.sleep(pause)  # a waiting writer takes the lock between steps
    return steps
