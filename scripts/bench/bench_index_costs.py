"""What each index of agent_runs, and the `q` search index, costs a batch insert, as a share of it.

    .venv/bin/python scripts/bench/bench_index_costs.py [--stored 100000] [--measure 20000] [--batch 1000]

One file with the console's schema (every migration applied) is filled to
`--stored` runs with the records of bench_batch_ceiling.py (uuid4 ids), then
copied once per variant: as it is, without one index (each in turn), without the
search index, and with the search table made with other FTS5 options. The same
`--measure` records are then inserted into every copy, body by body, the copies
taking turns so that the machine's changing load meets all of them alike, each
body in one transaction as the console writes a batch (SQLite DELETE/FULL): the
multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING, then the new rows into the
search index.

It prints, per variant, µs per record of the median transaction and its time as
a ratio of the full schema's; an index's cost is 1 minus the ratio of the copy
without it. `--synchronous OFF` leaves out the disk's syncs, which vary most.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_batch_ceiling import make_bodies  # noqa: E402

SEARCH = "runs_search"
# Other FTS5 options of the search table to compare (the columns and the tokenizer stay).
SEARCH_OPTIONS = {
    "search: rebuilt as migrated (a control)": "detail='none'",
    "search: detail=none, columnsize=0": "detail='none', columnsize=0",
}


def driver_batches(bodies: list[bytes]) -> list[tuple[list[str], list[tuple]]]:
    """Each body as the console inserts it: (columns, driver tuples)."""
    from console.domain.hand_check import well_formed_run
    from console.domain.records import field_values
    from console.domain.validation import parse_json_body
    from console.store.runstore import driver_rows, set_columns

    out = []
    for body in bodies:
        rows = [field_values(well_formed_run(item)) for item in parse_json_body(body)]
        columns = set_columns(rows, list(rows[0]))
        out.append((columns, driver_rows(rows, columns)))
    return out


def insert(conn: sqlite3.Connection, columns: list[str], params: list[tuple], search: bool) -> None:
    """One batch in one transaction, as the console writes it."""
    from console.store.runstore import insert_with_cursor

    cursor = conn.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    (through,) = cursor.execute("SELECT coalesce(max(id), 0) FROM agent_runs").fetchone()
    insert_with_cursor(cursor, columns, params, " ON CONFLICT (event_id) DO NOTHING RETURNING event_id")
    if search:
        cursor.execute(f"INSERT INTO {SEARCH} (rowid, run_id, error_summary) "
                       "SELECT id, run_id, error_summary FROM agent_runs WHERE id > ?", (through,))
    cursor.execute("COMMIT")


def connect(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


def make_variants(base: Path, tmp: Path, only: list[str]) -> dict[str, tuple[Path, bool]]:
    """label: (file, whether the search index is written); besides the full schema, only
    those whose label holds one of `only` when given."""
    conn = sqlite3.connect(base)
    indexes = [name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'agent_runs' AND sql IS NOT NULL "
        "ORDER BY name")]
    (search_sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (SEARCH,)).fetchone()
    conn.close()
    variants: dict[str, tuple[Path, bool]] = {}

    def copy(label: str, *statements: str, search: bool = True) -> None:
        if variants and only and not any(word in label for word in only):
            return
        path = tmp / f"v{len(variants)}.sqlite"
        shutil.copyfile(base, path)
        with sqlite3.connect(path) as c:
            for statement in statements:
                c.execute(statement)
        variants[label] = (path, search)

    copy("as migrated")
    for name in indexes:
        copy(f"without {name}", f"DROP INDEX {name}")
    copy("without the search index", f"DROP TABLE {SEARCH}", search=False)
    head = search_sql.split("tokenize='trigram'")[0]
    for label, options in SEARCH_OPTIONS.items():
        copy(label, f"DROP TABLE {SEARCH}", f"{head}tokenize='trigram', {options})",
             f"INSERT INTO {SEARCH} (rowid, run_id, error_summary) SELECT id, run_id, error_summary FROM agent_runs")
    return variants


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=100000, help="runs stored before the measurement")
    parser.add_argument("--measure", type=int, default=20000, help="records inserted into every variant")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL", "OFF"],
                        help="OFF leaves out the disk's syncs, whose time varies most on a shared machine")
    parser.add_argument("--only", default="", help="comma-separated words: only the variants whose label holds one")
    args = parser.parse_args()
    from console.core.settings import load_settings
    from console.store import migrate

    tmp = Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        base = tmp / "base.sqlite"
        migrate.upgrade(load_settings({"TELEMETRY_DB_PATH": str(base)}))
        print(f"... filling to {args.stored:,}", file=sys.stderr, flush=True)
        conn = connect(base)
        for columns, params in driver_batches(make_bodies(0, args.stored, args.batch, random.Random(1))):
            insert(conn, columns, params, search=True)
        conn.close()
        print("... copying", file=sys.stderr, flush=True)
        variants = make_variants(base, tmp, [word for word in args.only.split(",") if word])
        base.unlink()
        conns = {label: (connect(path, args.synchronous), search) for label, (path, search) in variants.items()}
        spent: dict[str, list[float]] = {label: [] for label in conns}
        batches = driver_batches(make_bodies(args.stored, args.measure, args.batch, random.Random(2)))
        print(f"... measuring {len(conns)} variants", file=sys.stderr, flush=True)
        order = list(conns)
        for n, (columns, params) in enumerate(batches):
            # Each body starts at the next variant: none is always first (or last) after the client's work.
            for label in order[n % len(order):] + order[: n % len(order)]:
                conn, search = conns[label]
                before = time.perf_counter()
                insert(conn, columns, params, search)
                if n:  # the first body warms each copy's cache
                    spent[label].append(time.perf_counter() - before)
        medians = {label: statistics.median(times) for label, times in spent.items()}
        full = next(iter(medians.values()))
        print(f"\n{args.batch} records per transaction, uuid4 ids, {args.stored:,} stored, "
              f"SQLite DELETE/{args.synchronous}; the median transaction")
        print(f"{'variant':<44} {'us/record':>9} {'x full':>7} {'cost':>6}")
        for label, seconds in medians.items():
            ratio = seconds / full
            print(f"{label:<44} {seconds / args.batch * 1e6:>9.1f} {ratio:>7.2f} {1 - ratio:>6.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
