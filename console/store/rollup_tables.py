"""The rollup tables (their keys and sums), the duration buckets, and the SQL that
computes rollups from `agent_runs` rows.

The recomputation of console/store/reconcile.py and the catch-up of console/store/watermark.py
share these expressions, so that a run lands in the same hour, day and bucket
either way, and in the ones console/store/rollups.py computes in Python for the
console's own batches.
"""

from __future__ import annotations

import math

GAMMA = 2**0.25
LOG_GAMMA = math.log(GAMMA)
MAX_BUCKET = 200  # 2**50 ms: anything longer lands here
ITEM_COLUMNS = ("items_discovered", "items_succeeded", "items_failed", "items_skipped")
SUM_COLUMNS = ("runs", "duration_ms_sum", *ITEM_COLUMNS)
# The run columns the runs page filters on besides the agent: runs are also counted per
# (facet, value, status), where facet names one of these columns and value is its value.
FACETS = ("job_type", "host", "environment")
# table: (key columns, summed columns)
TABLES = {
    "run_rollups": (("hour", "agent_name", "status"), SUM_COLUMNS),
    "run_rollup_durations": (("hour", "agent_name", "status", "bucket"), ("runs",)),
    "run_rollup_days": (("day", "agent_name", "status"), SUM_COLUMNS),
    "run_rollup_day_durations": (("day", "agent_name", "bucket"), ("runs",)),
    "run_rollup_totals": (("agent_name", "status"), SUM_COLUMNS),
    "run_rollup_total_durations": (("agent_name", "bucket"), ("runs",)),
    "run_facet_rollups": (("hour", "facet", "value", "status"), ("runs",)),
    "run_facet_totals": (("facet", "value", "status"), ("runs",)),
}


ROLLUP_SUMS = "count(*), coalesce(sum(duration_ms), 0), " + ", ".join(f"coalesce(sum({n}), 0)" for n in ITEM_COLUMNS)


def hour_expr(dialect: str) -> str:
    """A run's hour (of its start_time)."""
    if dialect == "sqlite":
        return "substr(replace(start_time, ' ', 'T'), 1, 13) || ':00:00.000000+00:00'"
    return "date_trunc('hour', start_time, 'UTC')"


def day_expr(dialect: str, column: str) -> str:
    """The day of a time `column` (start_time, or a rollup's hour)."""
    if dialect == "sqlite":
        return f"substr(replace({column}, ' ', 'T'), 1, 10) || 'T00:00:00.000000+00:00'"
    return f"date_trunc('day', {column}, 'UTC')"


def bucket_expr(dialect: str, log_gamma: str = ":log_gamma") -> str:
    """The duration bucket (rollups.duration_bucket); `log_gamma` is LOG_GAMMA's bound
    parameter, or its literal."""
    least = "min" if dialect == "sqlite" else "least"
    return (
        "CASE WHEN duration_ms IS NULL OR duration_ms < 1 THEN 0 ELSE "
        f"{least}({MAX_BUCKET}, CAST(floor(ln(duration_ms) / {log_gamma} + 1e-9) AS INTEGER) + 1) END"
    )


def add_on_conflict(table: str) -> str:
    """The clause that adds an upsert's sums to the row its key already has."""
    keys, sums = TABLES[table]
    return f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET " + ", ".join(
        f"{c} = {table}.{c} + excluded.{c}" for c in sums
    )


def facet_rows(dialect: str, where: str, *, hourly: bool) -> str:
    """SELECT (hour,) facet, value, status, count(*) of the agent_runs rows matching `where`,
    one group per facet value that is set."""
    hour = f"{hour_expr(dialect)} AS hour, " if hourly else ""
    picked = " UNION ALL ".join(
        f"SELECT {hour}'{name}' AS facet, {name} AS value, status FROM agent_runs WHERE ({where}) AND {name} IS NOT NULL"
        for name in FACETS
    )
    keys = "hour, facet, value, status" if hourly else "facet, value, status"
    return f"SELECT {keys}, count(*) FROM ({picked}) AS f GROUP BY {keys}"


def _add_rows_above(table: str) -> str:
    """SQLite: add the runs above the watermark (`id > ?`) to one rollup table, one upsert per group."""
    keys, sums = TABLES[table]
    if "facet" in keys:
        rows = facet_rows("sqlite", "id > ?1", hourly="hour" in keys)
        return f"INSERT INTO {table} ({', '.join((*keys, *sums))}) {rows} {add_on_conflict(table)}"
    hour, day = hour_expr("sqlite"), day_expr("sqlite", "start_time")
    picked = [{"hour": hour, "day": day}.get(key, key) for key in keys]
    if "bucket" in keys:
        picked[keys.index("bucket")] = bucket_expr("sqlite", log_gamma=repr(LOG_GAMMA))
        values, only = "count(*)", " AND status <> 'running'"
    else:
        values, only = ROLLUP_SUMS, ""
    positions = ", ".join(str(i + 1) for i in range(len(keys)))
    # NOT INDEXED (the rowid range stays a search): grouped by agent and status, SQLite
    # read an index in that order from end to end to save a sort of a few hundred rows,
    # 0.5-0.8 s per statement at 10,000,000 runs.
    return (
        f"INSERT INTO {table} ({', '.join((*keys, *sums))}) SELECT {', '.join(picked)}, {values} "
        f"FROM agent_runs NOT INDEXED WHERE id > ?{only} GROUP BY {positions} {add_on_conflict(table)}"
    )


# One statement per rollup table; each takes the watermark (`id > ?`) as its one parameter.
ADD_ROWS_ABOVE = tuple(_add_rows_above(table) for table in TABLES)
