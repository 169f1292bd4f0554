"""How long does one group commit of single POSTs hold SQLite's write lock?

    .venv/bin/python scripts/bench/bench_group_commit.py [--groups 400] [--sizes 4,8]

With two workers the write lock is what single POSTs wait for: each worker
commits its own clients' runs as one group, and the groups take turns. This
measures, in one process and without HTTP (so without the clients' noise), the
time from taking the lock to the commit's return, per group of `size` runs,
SQLite DELETE/FULL, each way on its own migrated file, the ways interleaved:

- `raw sqlite3` (the baseline): BEGIN IMMEDIATE, one multi-row INSERT, COMMIT;
- `counted in the transaction`: the runs with their rollups and search entries
  in the same transaction (the group commit before the fifth session; batches
  still write this way);
- `the console's group commit`: insert only, on a pooled driver connection
  (console/domain/group_commit.py), plus its share of the catch-up that later counts
  and indexes the runs (console/store/watermark.py; measured separately and divided
  by the runs it caught up).

For the raw way it also prints how many pages the group put in the rollback
journal (each is written to the journal, synced, then written to the file): every
index takes a page per distinct key range the group touches, which is why a
commit's cost grows with the group.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_api import make_runs  # noqa: E402

# A rollback journal starts with a header padded to one sector; each page in it is
# preceded by its number and followed by a checksum (https://sqlite.org/fileformat.html).
JOURNAL_HEADER_BYTES = 512


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=400, help="groups per way and size")
    parser.add_argument("--sizes", default="4,8")
    args = parser.parse_args()

    from console.core.settings import load_settings
    from console.domain import runs
    from console.domain.records import run_values
    from console.domain.validation import RunCreate
    from console.store import migrate, watermark
    from console.store.db import Database
    from console.store.runstore import driver_rows
    from console.store.writelock import queued_write

    tmp = Path(tempfile.mkdtemp(prefix="bench-group-commit-"))
    template = tmp / "template.sqlite"
    migrate.upgrade(load_settings({"TELEMETRY_DB_PATH": str(template)}))
    sizes = [int(s) for s in args.sizes.split(",")]
    records = make_runs(args.groups * sum(sizes) * 3, seed=5)
    rows = [run_values(RunCreate.model_validate(r)) for r in records]

    def database(name: str) -> Database:
        path = tmp / f"{name}.sqlite"
        shutil.copy(template, path)
        return Database(load_settings({"TELEMETRY_DB_PATH": str(path), "TELEMETRY_BASE_DIR": str(tmp / "base")}))

    raw_path = tmp / "raw.sqlite"
    shutil.copy(template, raw_path)
    raw = sqlite3.connect(raw_path, isolation_level=None)
    for pragma in ("journal_mode = DELETE", "synchronous = FULL", "temp_store = MEMORY"):
        raw.execute(f"PRAGMA {pragma}")
    counted_db, console_db = database("counted"), database("console")
    journal = Path(f"{raw_path}-journal")
    page_size = raw.execute("PRAGMA page_size").fetchone()[0]
    journal_pages: list[float] = []

    def raw_group(group):
        columns = list(group[0])
        params = driver_rows(group, columns)
        one = "(" + ",".join("?" * len(columns)) + ")"
        started = time.perf_counter()
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(
            f"INSERT INTO agent_runs ({', '.join(columns)}) VALUES " + ",".join([one] * len(params)),
            [v for row in params for v in row],
        )
        paused = time.perf_counter()
        journal_pages.append((journal.stat().st_size - JOURNAL_HEADER_BYTES) / (page_size + 8))
        resumed = time.perf_counter()
        raw.execute("COMMIT")
        return time.perf_counter() - started - (resumed - paused)

    def counted_group(group):
        new = runs.prepare_new_runs(group, "sqlite")
        started = time.perf_counter()
        queued_write(counted_db, lambda session: runs.insert_new_runs(session, new))
        return time.perf_counter() - started

    def console_group(group):
        columns = list(group[0])
        params = driver_rows(group, columns)
        started = time.perf_counter()
        queued_write(console_db, lambda cursor: runs.insert_uncounted(cursor, columns, params), driver=True)
        return time.perf_counter() - started

    ways = {
        "raw sqlite3": raw_group,
        "counted in the transaction": counted_group,
        "the console's group commit": console_group,
    }
    table = []
    offset = 0
    for size in sizes:
        held = {name: [] for name in ways}
        journal_pages.clear()
        catch_up_seconds, caught_up = 0.0, 0
        for i in range(args.groups):
            for name, way in ways.items():
                held[name].append(way(rows[offset : offset + size]))
                offset += size
            if (i + 1) % (256 // size) == 0:  # the writer catches up every 256 runs
                started = time.perf_counter()
                queued_write(console_db, watermark.catch_up)
                catch_up_seconds += time.perf_counter() - started
                caught_up += 256
        share = catch_up_seconds / caught_up * size if caught_up else 0.0
        base = statistics.median(held["raw sqlite3"])
        for name in ways:
            median = statistics.median(held[name]) + (share if name == "the console's group commit" else 0.0)
            pages = statistics.median(journal_pages) if name == "raw sqlite3" else None
            table.append((size, name, median * 1e3, size / median, median / base, pages))
    raw.close()
    counted_db.dispose()
    console_db.dispose()
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nSQLite DELETE/FULL, {args.groups} groups per way and size, ways interleaved; {os.cpu_count()} CPUs")
    print(
        f"{'runs/group':>10}  {'way':30} {'lock held ms (median)':>22} {'runs/s if lock-bound':>21} {'x raw':>6}"
        f" {'journal pages':>14}"
    )
    for size, name, ms, rate, ratio, pages in table:
        print(
            f"{size:>10}  {name:30} {ms:22.2f} {rate:21.0f} {ratio:6.2f} {'' if pages is None else f'{pages:.0f}':>14}"
        )
    print("(the console's row includes its share of the catch-up, which counts and indexes 256 runs at a time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
